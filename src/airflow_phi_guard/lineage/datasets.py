"""OpenLineage dataset identity of a path or URI, named as the naming spec and Airflow's provider name it.

The OpenLineage naming spec (https://openlineage.io/docs/spec/naming) gives a local file the namespace
``file`` and its absolute path as name; a file on another host ``file://{host}``; an object in a bucket
``s3://{bucket}`` or ``gs://{bucket}`` and its object key as name. The audit links a training run to the
governance run that produced its input by namespace and name, so the names here must be exactly those
that the Airflow OpenLineage provider gives an ``airflow.sdk.Asset`` declared as a task's inlet or outlet.
The provider (apache-airflow-providers-openlineage 2.x) delegates that to the converter registered for
the URI scheme: ``airflow.providers.common.io.assets.file.convert_asset_to_openlineage`` for ``file``,
the Amazon and Google providers' converters for ``s3`` and ``gs``. The rules are replicated here so that
this module stays free of Airflow; tests/lineage/test_datasets.py holds them to the provider's own.

A database table follows the spec's database rule, as the providers' SQL lineage names it: namespace
``postgres://{host}:{port}`` (port 5432 when none is given; ``postgresql`` and SQLAlchemy driver suffixes
such as ``postgresql+psycopg`` are the same scheme) and name ``{database}.{schema}.{table}``. A consent
registry read from a database is displayed as that URI joined (consent/sql.py), so
``postgres://127.0.0.1:5432/test.public.consent`` parses back to its namespace and name here.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

#: Object stores whose namespace is the bucket (or container) and whose name is the object key.
_OBJECT_STORE_SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "s3n": "s3",
    "gs": "gs",
    "gcs": "gs",
    "abfss": "abfss",
    "wasbs": "wasbs",
}

#: Databases whose datasets are named ``database.schema.table`` under ``scheme://host:port``, with the
#: OpenLineage scheme and the default port of each.
_DATABASE_SCHEMES = {
    "postgres": ("postgres", 5432),
    "postgresql": ("postgres", 5432),
    "mysql": ("mysql", 3306),
    "mariadb": ("mysql", 3306),
}

LOCAL_NAMESPACE = "file"


@dataclass(frozen=True, order=True)
class DatasetIdentity:
    """The OpenLineage namespace and name of one dataset.

    :param namespace: the data source, e.g. ``file`` or ``s3://bucket``.
    :param name: the dataset within it, e.g. ``/data/governed.parquet`` or ``governed/part-0.parquet``.
    """

    namespace: str
    name: str

    @property
    def uri(self) -> str:
        """The dataset as one URI, the form an auditor reads and an Airflow ``Asset`` is declared with."""
        return dataset_uri(self.namespace, self.name)


def dataset_identity(location: str | os.PathLike[str]) -> DatasetIdentity:
    """The OpenLineage identity of a local path or a storage URI.

    A local path is made absolute (symlinks resolved, like the engine resolves its input and output), so
    the same file always has the same name. A URI is taken as Airflow takes an Asset URI: scheme lowered,
    user info, query and fragment ignored, trailing slashes removed, nothing percent-decoded.

    :param location: a path such as ``demo-output/governed.parquet`` or a URI such as
        ``file:///data/governed.parquet`` or ``s3://bucket/governed/``.
    """
    text = os.fspath(location)
    parsed = urllib.parse.urlsplit(text) if _looks_like_uri(text) else None
    if parsed is None:
        return DatasetIdentity(LOCAL_NAMESPACE, str(Path(text).resolve()))

    scheme = parsed.scheme.lower()
    # Airflow drops user info when it holds a password (which never belongs in an Asset URI), and
    # trailing slashes; a bare user part stays, as it names the container in abfss://container@account.
    host = parsed.netloc.rpartition("@")[2] if parsed.password else parsed.netloc
    path = parsed.path.rstrip("/") or "/"

    if scheme == "file":
        # Airflow re-joins the URI before converting it, which makes a relative path absolute.
        return _file_identity(host, path if path.startswith("/") else "/" + path)
    if scheme.partition("+")[0] in _DATABASE_SCHEMES:
        return _database_identity(scheme.partition("+")[0], parsed, path)
    if scheme in _OBJECT_STORE_SCHEMES:
        key = path.lstrip("/")
        return DatasetIdentity(f"{_OBJECT_STORE_SCHEMES[scheme]}://{host}", key or "/")
    # The spec's general rule for any other source: namespace scheme://authority, name the path.
    return DatasetIdentity(f"{scheme}://{host}" if host else scheme, path)


def asset_uri(location: str | os.PathLike[str]) -> str:
    """The URI to declare an ``airflow.sdk.Asset`` with, so that the provider names it as this module does.

    :param location: a local path or a storage URI.
    """
    return dataset_identity(location).uri


def dataset_uri(namespace: str, name: str) -> str:
    """Join an OpenLineage namespace and name back into the URI they were taken from.

    :param namespace: e.g. ``file``, ``file://host`` or ``s3://bucket``.
    :param name: e.g. ``/data/x.parquet`` or ``key/x.parquet``.
    """
    if namespace == LOCAL_NAMESPACE:
        return f"file://{name}"
    if name.startswith("/"):
        return f"{namespace}{name}"
    return f"{namespace}/{name}"


def _looks_like_uri(text: str) -> bool:
    scheme = urllib.parse.urlsplit(text).scheme
    # A one-letter scheme is a Windows drive (C:\data), not a URI.
    return len(scheme) > 1 and (text[len(scheme) :].startswith("://") or scheme.lower() == "file")


def _database_identity(scheme: str, parsed: urllib.parse.SplitResult, path: str) -> DatasetIdentity:
    # Never the user or password: the namespace names the server, not who connected to it.
    lineage_scheme, default_port = _DATABASE_SCHEMES[scheme]
    host = parsed.hostname or "localhost"
    return DatasetIdentity(f"{lineage_scheme}://{host}:{parsed.port or default_port}", path.lstrip("/"))


def _file_identity(host: str, path: str) -> DatasetIdentity:
    # As common.io's converter: a URI whose whole path is "/" names a file by its netloc
    # (file://data.parquet), otherwise a host other than the empty one is a remote file system.
    if path == "/" and host:
        return DatasetIdentity(LOCAL_NAMESPACE, host if host.startswith("/") else "/" + host)
    if host:
        return DatasetIdentity(f"file://{host}", path)
    return DatasetIdentity(LOCAL_NAMESPACE, path)
