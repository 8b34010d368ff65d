"""Dataset identity: the OpenLineage naming spec's rules, and the names Airflow's provider gives Assets."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

from airflow_phi_guard.lineage.datasets import DatasetIdentity, asset_uri, dataset_identity, dataset_uri


@pytest.mark.parametrize(
    ("location", "namespace", "name"),
    [
        # Local file system: namespace "file", name the absolute path (spec, "Local file system").
        ("file:///data/governed.parquet", "file", "/data/governed.parquet"),
        ("/data/governed.parquet", "file", "/data/governed.parquet"),
        # Remote file system: namespace file://{host}, name the path.
        ("file://nas01/share/x.parquet", "file://nas01", "/share/x.parquet"),
        # S3 and GCS: namespace the bucket, name the object key.
        ("s3://bucket/governed/x.parquet", "s3://bucket", "governed/x.parquet"),
        ("gs://bucket/governed/x.parquet", "gs://bucket", "governed/x.parquet"),
        # The gcs:// and s3a:// spellings name the same stores.
        ("gcs://bucket/x.parquet", "gs://bucket", "x.parquet"),
        ("s3a://bucket/x.parquet", "s3://bucket", "x.parquet"),
        # A bucket itself is the key "/" (as the Amazon and Google providers name it).
        ("s3://bucket", "s3://bucket", "/"),
        # HDFS: namespace hdfs://{namenode host}:{port}, name the path.
        ("hdfs://namenode:8020/data/x", "hdfs://namenode:8020", "/data/x"),
        # ABFSS: the container is part of the namespace, the path is the name.
        (
            "abfss://container@account.dfs.core.windows.net/path/x.parquet",
            "abfss://container@account.dfs.core.windows.net",
            "path/x.parquet",
        ),
        # A folder and the same folder with a trailing slash are one dataset.
        ("file:///data/governed/", "file", "/data/governed"),
        ("s3://bucket/governed/", "s3://bucket", "governed"),
    ],
)
def test_identity_follows_the_naming_spec(location, namespace, name):
    assert dataset_identity(location) == DatasetIdentity(namespace, name)


def test_a_relative_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert dataset_identity("out/governed.parquet") == DatasetIdentity(
        "file", str(tmp_path.resolve() / "out/governed.parquet")
    )


def test_a_path_object_is_a_local_path(tmp_path):
    assert dataset_identity(tmp_path / "x.parquet") == DatasetIdentity(
        "file", str(tmp_path.resolve() / "x.parquet")
    )


def test_a_symlinked_folder_names_the_file_it_leads_to(tmp_path):
    """The engine resolves its paths, so lineage must name a file the same way whichever link leads to it."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert dataset_identity(tmp_path / "link" / "x.parquet") == dataset_identity(
        tmp_path / "real" / "x.parquet"
    )


@pytest.mark.parametrize(
    "location",
    [
        "/data/governed.parquet",
        "file://nas01/share/x.parquet",
        "s3://bucket/governed/x.parquet",
        "gs://b/k/x",
    ],
)
def test_uri_and_identity_round_trip(location):
    identity = dataset_identity(location)
    assert dataset_identity(identity.uri) == identity
    assert dataset_uri(identity.namespace, identity.name) == identity.uri


# Held against the provider's own translation: these are the Asset URIs a DAG may declare.
ASSET_URIS = [
    "file:///abs/path/x.parquet",
    "file:///abs/path/dir/",
    "file:///abs/my%20file.parquet",
    "file:///abs/my file.parquet",
    "file://host/share/x.parquet",
    "file://localhost/abs/x.parquet",
    "file:/abs/x.parquet",
    "FILE:///abs/X.parquet",
    "file:///abs/x.parquet?b=1&a=2#fragment",
    "file:///abs/./x/../y.parquet",
    "file://user:secret@host/abs/x.parquet",
]


@pytest.fixture(scope="module")
def translate_airflow_asset(tmp_path_factory):
    """The Airflow OpenLineage provider's Asset translation, with Airflow configured in a scratch home."""
    with pytest.MonkeyPatch.context() as patch:
        if "airflow" not in sys.modules:
            patch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
        pytest.importorskip("airflow.providers.openlineage")
        from airflow.providers.openlineage.utils.utils import translate_airflow_asset
        from airflow.sdk import Asset

        def translate(uri: str) -> DatasetIdentity:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Asset warns about the password in one URI, by design
                dataset = translate_airflow_asset(Asset(uri), None)
            assert dataset is not None, f"the provider did not translate {uri}"
            return DatasetIdentity(dataset.namespace, dataset.name)

        yield translate


@pytest.mark.parametrize("uri", ASSET_URIS)
def test_identity_is_the_providers_for_an_asset_uri(translate_airflow_asset, uri):
    assert dataset_identity(uri) == translate_airflow_asset(uri)


@pytest.mark.parametrize("name", ["governed.parquet", "with space.parquet", "dir/nested.parquet"])
def test_asset_uri_declares_an_asset_the_provider_names_like_the_path(
    translate_airflow_asset, tmp_path, name
):
    """What the example DAG does: Asset(asset_uri(path)) as the training task's inlet."""
    path = tmp_path / name
    assert translate_airflow_asset(asset_uri(path)) == dataset_identity(path)
    assert dataset_identity(path).name == os.fspath(Path(path).resolve())
