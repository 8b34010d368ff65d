"""A module opens with a one-sentence docstring that names its responsibility (STYLE.md)."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "airflow_phi_guard"

# Known shortcoming: 49 other modules of the package still open with several paragraphs; checking every
# module here, once their detail has moved into the functions and classes it describes, would close it.
CHECKED = [
    "sql.py",
    "consent/sql.py",
    "recipients/sql.py",
    "trail/inference.py",
    "engine/source.py",
    "operators/hooks.py",
    "operators/inference.py",
]


@pytest.mark.parametrize("module", CHECKED)
def test_the_module_docstring_is_one_sentence(module: str):
    docstring = ast.get_docstring(ast.parse((PACKAGE / module).read_text(encoding="utf-8")), clean=True)

    assert docstring, f"{module} has no module docstring"
    assert "\n" not in docstring, f"{module}: the module docstring runs past one line"
    assert docstring.endswith("."), f"{module}: the module docstring is not a sentence"
