"""The one error table (`placement/http/problems.py`): complete, followed by the README,
and the framework's rows are what its own errors always said on the wire."""

from __future__ import annotations

import http
import subprocess
import sys
from pathlib import Path

from placement.errors import Kind
from placement.http import problems
from placement.http.problems import FRAMEWORK_KINDS, PROBLEM_TYPES, HttpKind

README = Path(__file__).parents[2] / "README.md"


def test_every_kind_has_one_row() -> None:
    assert set(PROBLEM_TYPES) == set(Kind) | set(HttpKind)


def test_the_domain_kinds_carry_no_http_only_case() -> None:
    assert not {kind.value for kind in Kind} & {kind.value for kind in HttpKind}


def test_the_framework_rows_keep_the_phrase_of_their_status() -> None:
    """Before the table, a framework error's type and title came from its status's phrase
    (as any framework error not in the table still does): the rows must say the same."""
    for status, kind in FRAMEWORK_KINDS.items():
        phrase = http.HTTPStatus(status).phrase
        assert PROBLEM_TYPES[kind].status == status
        assert (kind.value, PROBLEM_TYPES[kind].title) == (problems.slug(phrase), phrase)


def test_the_readme_table_of_problem_types_is_the_code_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "placement.http.problems"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed == problems.readme_table()
    assert printed in README.read_text(), (
        "README.md's table of problem types differs from placement/http/problems.py:"
        " replace it with the output of `python -m placement.http.problems`"
    )
