"""The Policy Engine stand-in's rules: an ordered list of match-then-act rules read from a
YAML or JSON file, checked on load, and applied to a spec.

    default_provider: local-kubevirt   # used when no matching rule picks a provider
    rules:                             # applied in order
      - name: clusters on OpenShift    # optional, for the reader
        match: {service_type: cluster} # dotted spec paths -> equal values; absent: match all
        provider: local-openshift      # the last matching provider wins ("" -> 424 upstream)
      - match: {environment: forbidden}
        reject: "environment is forbidden"   # 406, ends evaluation
      - match: {vm.cpu: 64}
        conflict: "quota policy overrides"   # 409, ends evaluation
      - match: {service_type: container}
        set: {container.replicas: 1}         # accumulates; MODIFIED if the spec changed

Later rules match against the spec as earlier rules have set it.
"""

from __future__ import annotations

import copy
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_RULES = "default-rules.yaml"

FieldPath = tuple[str, ...]
_RULE_KEYS = ("name", "match", "reject", "conflict", "set", "provider")
_TOP_KEYS = ("default_provider", "rules")
_MISSING = object()


class RulesError(ValueError):
    """A rules file that cannot be used; the message is one line naming the culprit."""


@dataclass(frozen=True)
class Rule:
    name: str | None = None  # documentation only
    match: tuple[tuple[FieldPath, Any], ...] = ()
    reject: str | None = None
    conflict: str | None = None
    set: tuple[tuple[FieldPath, Any], ...] = ()
    provider: str | None = None


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = ()
    default_provider: str = ""


@dataclass(frozen=True)
class Verdict:
    spec: dict[str, Any]
    provider: str
    modified: bool


@dataclass(frozen=True)
class Refusal:
    kind: Literal["reject", "conflict"]
    reason: str


def load_rules(path: str | Path | None = None) -> Rules:
    """The rules in the file at `path`, or the packaged default rules."""
    if path is None:
        source = DEFAULT_RULES
        packaged = importlib.resources.files("placement_dev.standins").joinpath(DEFAULT_RULES)
        text = packaged.read_text("utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesError(f"{source}: cannot read: {exc}") from None
    return parse_rules(_load_document(text, source), source)


def parse_rules(document: object, source: str = "rules") -> Rules:
    """Check a parsed rules document; RulesError names the rule index and field at fault."""
    try:
        return _rules(document)
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None


def evaluate(rules: Rules, spec: dict[str, Any]) -> Verdict | Refusal:
    """Apply the rules in order to `spec` (left unchanged)."""
    current, provider = spec, None
    for rule in rules.rules:
        if not all(_same(_get(current, path), value) for path, value in rule.match):
            continue
        if rule.reject is not None:
            return Refusal("reject", rule.reject)
        if rule.conflict is not None:
            return Refusal("conflict", rule.conflict)
        if rule.set and current is spec:
            current = copy.deepcopy(spec)
        for path, value in rule.set:
            _put(current, path, copy.deepcopy(value))
        if rule.provider is not None:
            provider = rule.provider
    chosen = rules.default_provider if provider is None else provider
    return Verdict(current, chosen, current is not spec and current != spec)


def _load_document(text: str, source: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RulesError(f"{source}: not valid YAML or JSON{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML or JSON: {exc}") from None


def _rules(document: object) -> Rules:
    if not isinstance(document, dict):
        raise RulesError("must be a mapping with a 'rules' list (and 'default_provider')")
    _known_keys(document, _TOP_KEYS, "top level")
    default = document.get("default_provider", "")
    if not isinstance(default, str):
        raise RulesError(f"default_provider: must be a string, not {_kind(default)}")
    items = document.get("rules", [])
    if not isinstance(items, list):
        raise RulesError(f"rules: must be a list, not {_kind(items)}")
    return Rules(tuple(_rule(index, item) for index, item in enumerate(items)), default)


def _rule(index: int, item: object) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(item, dict):
        raise RulesError(f"{where}: must be a mapping, not {_kind(item)}")
    _known_keys(item, _RULE_KEYS, where)
    rule = Rule(
        name=_optional_str(item, "name", where),
        match=_paths(item.get("match", {}), f"{where}.match"),
        reject=_reason(item, "reject", where),
        conflict=_reason(item, "conflict", where),
        set=_paths(item.get("set", {}), f"{where}.set"),
        provider=_optional_str(item, "provider", where),
    )
    _check_actions(item, where)
    return rule


def _check_actions(item: Mapping[str, object], where: str) -> None:
    ending = [key for key in ("reject", "conflict") if key in item]
    other = [key for key in ("set", "provider") if key in item]
    if not ending and not other:
        raise RulesError(f"{where}: needs one of reject, conflict, set, provider")
    if len(ending) > 1 or (ending and other):
        raise RulesError(f"{where}: {ending[0]} cannot be combined with {(ending + other)[1]}")


def _paths(value: object, where: str) -> tuple[tuple[FieldPath, Any], ...]:
    if not isinstance(value, dict):
        raise RulesError(f"{where}: must be a mapping of dotted field paths, not {_kind(value)}")
    pairs = []
    for key, item in value.items():
        path = key.split(".") if isinstance(key, str) else []
        if not path or not all(path):
            raise RulesError(f"{where}: {key!r} is not a dotted field path like vm.cpu")
        _check_json(item, f"{where}.{key}")
        pairs.append((tuple(path), item))
    return tuple(pairs)


def _reason(item: Mapping[str, object], key: str, where: str) -> str | None:
    value = item.get(key)
    if key in item and (not isinstance(value, str) or not value):
        raise RulesError(f"{where}.{key}: must be a non-empty reason string, not {_kind(value)}")
    return value if isinstance(value, str) else None


def _optional_str(item: Mapping[str, object], key: str, where: str) -> str | None:
    value = item.get(key)
    if key in item and not isinstance(value, str):
        raise RulesError(f"{where}.{key}: must be a string, not {_kind(value)}")
    return value if isinstance(value, str) else None


def _known_keys(item: Mapping[object, object], allowed: tuple[str, ...], where: str) -> None:
    for key in item:
        if key not in allowed:
            raise RulesError(f"{where}: unknown field {key!r} (allowed: {', '.join(allowed)})")


def _check_json(value: object, where: str) -> None:
    """Values end up in JSON answers: YAML dates and the like are refused up front."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RulesError(f"{where}: keys must be strings, not {_kind(key)}")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
    elif value is not None and not isinstance(value, str | int | float):
        raise RulesError(f"{where}: {_kind(value)} is not a JSON value (quote it)")


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _get(spec: Mapping[str, Any], path: FieldPath) -> Any:
    node: Any = spec
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _put(spec: dict[str, Any], path: FieldPath, value: Any) -> None:
    """Set `value` at `path`, making (or replacing non-mapping) intermediate objects."""
    node = spec
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _same(actual: Any, expected: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return actual is not _MISSING and bool(actual == expected)
