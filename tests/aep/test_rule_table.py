"""spectral/README.md's rule table and .spectral.yaml name the same rules.

The table maps every local rule to the public AEP linter rule it corresponds
to; this test keeps it from drifting: a rule added to, removed from or
re-graded in the ruleset without its row fails here. No Spectral needed.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .conftest import REPO_ROOT, RULESET

TABLE = REPO_ROOT / "spectral" / "README.md"
# A table row: | `rule` | severity | checks | public rule | why |
ROW = re.compile(r"^\| `(?P<rule>[^`]+)` \| (?P<severity>[a-z]+) \|(?P<rest>.*)\|$")


def table_rows() -> list[re.Match[str]]:
    """The rows of the table under the `## Rules` heading."""
    text = TABLE.read_text(encoding="utf-8")
    section = text.split("\n## Rules\n", 1)[1].split("\n## ", 1)[0]
    return [m for line in section.splitlines() if (m := ROW.match(line))]


def severity(setting: Any) -> str:
    """A rule's severity in .spectral.yaml (`off` reads as False in YAML 1.1)."""
    if isinstance(setting, dict):
        return str(setting["severity"])
    if setting is False:
        return "off"
    return str(setting)


def ruleset_severities() -> dict[str, str]:
    with RULESET.open(encoding="utf-8") as f:
        rules = yaml.safe_load(f)["rules"]
    return {code: severity(setting) for code, setting in rules.items()}


def test_table_lists_every_rule_once() -> None:
    rows = [m["rule"] for m in table_rows()]
    assert len(rows) == len(set(rows)), (
        f"rules listed twice: {sorted({r for r in rows if rows.count(r) > 1})}"
    )
    ruleset = set(ruleset_severities())
    assert set(rows) == ruleset, (
        f"in .spectral.yaml but not in the table: {sorted(ruleset - set(rows))}; "
        f"in the table but not in .spectral.yaml: {sorted(set(rows) - ruleset)}"
    )


def test_table_severities_match() -> None:
    expected = ruleset_severities()
    wrong = {
        m["rule"]: (m["severity"], expected[m["rule"]])
        for m in table_rows()
        if m["rule"] in expected and m["severity"] != expected[m["rule"]]
    }
    assert not wrong, f"table severity != .spectral.yaml severity: {wrong}"


def test_every_row_names_its_public_rule() -> None:
    """The public rule column (the fourth) is `aep-...` ids, `ours`, or says `none: ...`."""
    bad = []
    for m in table_rows():
        cells = [cell.strip() for cell in m["rest"].split(" | ")]
        public = cells[1] if len(cells) == 3 else ""
        ids = re.findall(r"`([^`]+)`", public)
        named = bool(ids) and all(re.fullmatch(r"aep-[a-z0-9-]+", i) for i in ids)
        if not (named or public == "ours" or public.startswith("none: ")):
            bad.append(f"{m['rule']}: {public!r}")
    assert not bad, "rows without a public rule column:\n" + "\n".join(bad)
