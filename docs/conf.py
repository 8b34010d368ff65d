"""Sphinx configuration of the documentation site: Markdown through MyST, the furo theme."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow_phi_guard import __version__

# The reference pages are written at build time from the schemas by the extension in _ext/.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "airflow-phi-guard"
copyright = "the airflow-phi-guard authors"
release = __version__
version = __version__

extensions = ["myst_parser", "phi_guard_reference"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Heading anchors, so that pages can link to each other's sections as page.md#section.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# Where the README's links to files of the repository that are no pages of this site lead.
phi_guard_repository_url = "https://github.com/airflow-phi-guard/airflow-phi-guard"

html_theme = "furo"
html_title = f"airflow-phi-guard {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
