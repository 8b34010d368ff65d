"""Data Docs that render without network: the CDN assets of GX's pages, shipped and linked locally.

Great Expectations 1.24's page templates (``render/view/templates/*.j2``) load their styles and scripts
from five CDNs; on an air-gapped machine the pages then show no table rows at all. The product ships the
same files, from the npm registry packages of the same versions (for the templates' unversioned
``vega@5``, ``vega-lite@5`` and ``vega-embed@6``, the latest releases of those major versions), each with
its licence, under ``quality/static/vendor/<package>@<version>/`` (see ``SOURCES.md`` there).
:func:`make_offline` copies them into the Data Docs site and rewrites every page's links to the copies,
relative to the page, so that the site can be moved or served as files. The ``integrity`` and
``crossorigin`` attributes are dropped with the rewrite: a browser refuses a subresource check on a
``file://`` page, and the shipped files are held to the templates' hashes by a test instead.

GX's logo is loaded from GX's web-assets bucket with the project's id in the address, which would tell GX
that a page was viewed; it is pointed at the copy GX itself writes into the site's ``static/images``.

A page that still names a CDN after the rewrite (a GX release that added an asset) is reported by
:func:`remote_assets` and logged as a warning; a test fails on it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

#: The folder of the shipped assets inside a Data Docs site.
SITE_VENDOR_DIR = "static/vendor"

#: Each CDN address of GX 1.24.1's templates, with the shipped file that replaces it.
CDN_ASSETS: Mapping[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap@4.3.1/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap@4.3.1/js/bootstrap.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table@1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table@1.19.1/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": (
        "bootstrap-table@1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": (
        "bootstrap-table@1.19.0/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": (
        "bootstrap-table@1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker@1.9.0/css/bootstrap-datepicker.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker@1.9.0/js/bootstrap-datepicker.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark@1.1.0/css/bootstrap-prefers-dark.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free@6.6.0/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js@1.12.9/umd/popper.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": "vega@5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite@5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed@6.29.0/vega-embed.min.js",
}

# A <link>, <script> or <img> element's href or src that is a remote address.
_REMOTE_ASSET = re.compile(r"<(?:link|script|img)\b[^>]*?\b(?:href|src)=[\"'](https?://[^\"']+)[\"']", re.I)
# GX's logo, loaded from its web-assets bucket with the project's id in the query: a page view would be
# reported to GX. GX ships the same image in the site's static/images.
_GX_IMAGE = re.compile(
    r'"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/([\w.-]+)(?:\?[^"]*)?"'
)
# The subresource-integrity attributes a file:// page cannot satisfy.
_INTEGRITY = re.compile(r"\s+(?:integrity=\"[^\"]*\"|crossorigin=\"[^\"]*\")")


def vendor_dir() -> Path:
    """The folder of the shipped assets in the installed package."""
    return Path(str(resources.files("airflow_phi_guard.quality").joinpath("static", "vendor")))


def make_offline(data_docs_dir: str | os.PathLike[str]) -> list[str]:
    """Copy the shipped assets into a Data Docs site and point every page at them.

    :param data_docs_dir: the site's folder (its ``index.html`` at the top).
    :returns: the remote asset addresses still named by some page after the rewrite (none when GX's
        templates are those this module knows).
    """
    site = Path(data_docs_dir)
    if not site.is_dir():
        return []
    target = site / SITE_VENDOR_DIR
    shutil.copytree(vendor_dir(), target, dirs_exist_ok=True)

    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        rewritten = _rewrite(text, page.parent.relative_to(site))
        if rewritten != text:
            page.write_text(rewritten, encoding="utf-8")

    remaining = remote_assets(site)
    if remaining:
        log.warning(
            "%d remote asset(s) of the Data Docs at %s have no shipped copy, so pages need network for "
            "them: %s",
            len(remaining),
            site,
            ", ".join(remaining[:10]),
        )
    return remaining


def remote_assets(data_docs_dir: str | os.PathLike[str]) -> list[str]:
    """The remote addresses that pages of a Data Docs site load styles or scripts from.

    :param data_docs_dir: the site's folder.
    """
    found: set[str] = set()
    for page in Path(data_docs_dir).rglob("*.html"):
        found.update(_REMOTE_ASSET.findall(page.read_text(encoding="utf-8")))
    return sorted(found)


def _rewrite(text: str, page_dir: Path) -> str:
    up = posixpath.relpath(SITE_VENDOR_DIR, page_dir.as_posix() or ".")
    images = posixpath.relpath("static/images", page_dir.as_posix() or ".")

    def local(match: re.Match[str]) -> str:
        element = match.group(0)
        for address, shipped in CDN_ASSETS.items():
            quoted = f'"{address}"'
            if quoted in element:
                return _INTEGRITY.sub("", element.replace(quoted, f'"{up}/{shipped}"'))
        return _GX_IMAGE.sub(lambda image: f'"{images}/{image.group(1)}"', element)

    return re.sub(r"<(?:link|script|img)\b[^>]*>", local, text, flags=re.I)
