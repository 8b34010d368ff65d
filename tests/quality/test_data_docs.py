"""Data Docs offline: every CDN asset of GX's templates is shipped with its licence and the templates' hashes,
and in headless Chromium without network the pages show their table rows, which the CDN pages do not."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.quality.data_docs import CDN_ASSETS, SITE_VENDOR_DIR, remote_assets, vendor_dir
from airflow_phi_guard.quality.suite import RiskCheck
from airflow_phi_guard.quality.validate import validate_governed_dataset
from tests.quality.conftest import governed_table, make_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _templates() -> Path:
    import great_expectations

    return Path(great_expectations.__file__).parent / "render" / "view" / "templates"


def _template_assets() -> dict[str, str | None]:
    """Each remote style or script of GX's templates, with its integrity hash when it has one."""
    found: dict[str, str | None] = {}
    for template in _templates().glob("*.j2"):
        for element in re.findall(r"<(?:link|script)\b[^>]*>", template.read_text()):
            address = re.search(r"(?:href|src)=\"(https?://[^\"]+)\"", element)
            if address:
                integrity = re.search(r"integrity=\"([^\"]+)\"", element)
                found[address.group(1)] = integrity.group(1) if integrity else None
    return found


def test_every_remote_asset_of_the_templates_has_a_shipped_copy():
    assets = _template_assets()

    assert assets  # the templates were read
    assert sorted(set(assets) - set(CDN_ASSETS)) == []
    for shipped in CDN_ASSETS.values():
        assert (vendor_dir() / shipped).is_file(), shipped


def test_every_shipped_package_has_its_licence_and_a_source_line():
    sources = (vendor_dir() / "SOURCES.md").read_text()
    packages = {
        shipped.split("/")[0] if not shipped.startswith("@") else "/".join(shipped.split("/")[:2])
        for shipped in CDN_ASSETS.values()
    }

    for package in packages:
        assert list((vendor_dir() / package).glob("LICENSE*")), package
        name, version = package.rsplit("@", 1)
        assert f"| {name} | {version} |" in sources, package


def test_the_shipped_files_have_the_hashes_the_templates_pin():
    pinned = {address: integrity for address, integrity in _template_assets().items() if integrity}

    assert len(pinned) == 2  # popper.js and bootstrap's script
    for address, integrity in pinned.items():
        algorithm, expected = integrity.split("-", 1)
        digest = hashlib.new(algorithm, (vendor_dir() / CDN_ASSETS[address]).read_bytes()).digest()
        assert base64.b64encode(digest).decode() == expected, address


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A Data Docs site with one failed validation of the demo-like set, custom checks included."""
    root = tmp_path_factory.mktemp("offline")
    table = governed_table(SSN=["999-12-3456", None, None, None], AGE=pa.array([95, 3, None, 40], pa.int32()))
    pq.write_table(table, root / "governed.parquet")
    validate_governed_dataset(
        root / "governed.parquet",
        make_report(),
        suite_name="offline",
        data_docs_dir=root / "docs",
        gx_project_dir=root / "gx",
        risk=RiskCheck(("GENDER",), 2),
    )
    return root / "docs"


def _pages(site: Path) -> dict[str, Path]:
    return {
        "index": site / "index.html",
        "suite": site / "expectations" / "offline.html",
        "validation": next((site / "validations" / "offline").rglob("*.html")),
    }


def _render_offline(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran in headless Chromium, in a network namespace with no network."""
    assert CHROMIUM, "headless Chromium is needed: apt-get install chromium"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        # Belt and braces: no route out of the namespace, and no proxy or name that could be reached.
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    if shutil.which("unshare"):
        command = ["unshare", "-n", *command]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def _rows(dom: str) -> int:
    return len(re.findall(r"<tr\b", dom))


def test_no_page_loads_anything_from_the_network(site):
    assert remote_assets(site) == []
    assert (site / SITE_VENDOR_DIR / "jquery@3.7.1" / "jquery.min.js").is_file()


def test_pages_render_their_tables_offline_and_cdn_pages_do_not(site, tmp_path):
    # The same site with the CDN addresses put back stands for what GX writes: offline, bootstrap-table
    # never runs, so the index table has no row and no table gets its rendered frame.
    cdn_site = tmp_path / "cdn"
    shutil.copytree(site, cdn_site)
    for page in cdn_site.rglob("*.html"):
        text = page.read_text()
        for address, shipped in CDN_ASSETS.items():
            text = re.sub(r'"[./]*' + re.escape(f"{SITE_VENDOR_DIR}/{shipped}") + '"', f'"{address}"', text)
        page.write_text(text)
    assert remote_assets(cdn_site)

    offline = {name: _render_offline(page, tmp_path / "profile") for name, page in _pages(site).items()}
    cdn = {name: _render_offline(page, tmp_path / "profile") for name, page in _pages(cdn_site).items()}

    assert _rows(offline["index"]) >= 2 and _rows(cdn["index"]) == 0
    for name in ("suite", "validation"):
        assert "fixed-table-body" in offline[name], name
        assert "fixed-table-body" not in cdn[name], name
    validation = offline["validation"]
    # The custom expectations are rendered, with what they found in counts and names.
    assert "The table has exactly the allowlisted columns" in validation
    assert "extra: SSN; missing: none" in validation
    assert "AGE is an age in whole years from 0 to 90" in validation
    assert "above top age: 1" in validation
    assert "holds at least 2 rows (k-anonymity)" in validation
    assert _rows(validation) >= 10


def test_a_screenshot_of_the_offline_validation_page(site, tmp_path):
    # The picture in docs/data-docs.md is taken this way; here it is taken again to show it still can be.
    assert CHROMIUM, "headless Chromium is needed: apt-get install chromium"
    shot = tmp_path / "validation.png"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=5000",
        "--window-size=1400,1800",
        f"--screenshot={shot}",
        _pages(site)["validation"].as_uri(),
    ]
    subprocess.run(command, capture_output=True, timeout=120, check=True)

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
