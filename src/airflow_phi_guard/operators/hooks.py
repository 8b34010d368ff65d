"""Hooks that fetch what the core needs from Airflow connections: secrets, and the consent database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from airflow_phi_guard.consent.sql import DatabaseLocation, SqlConsentSource


class PseudonymKeyHook(BaseHook):
    """The key of the ``pseudonymize`` treatment, kept as the password of an Airflow connection.

    The key never belongs in a policy file or a DAG: keep it in a connection (or a secrets backend behind
    one), so that Airflow masks it in logs. Only a keyed fingerprint of it is ever recorded.

    :param pseudonym_key_conn_id: the connection whose password is the key.
    """

    conn_name_attr = "pseudonym_key_conn_id"
    default_conn_name = "phi_guard_pseudonym_key"
    conn_type = "phi_guard_pseudonym_key"
    hook_name = "PHI Guard pseudonym key"

    def __init__(self, pseudonym_key_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.pseudonym_key_conn_id = pseudonym_key_conn_id

    def get_key(self) -> bytes | None:
        """The key, or None when the connection does not exist or has no password."""
        try:
            connection = self.get_connection(self.pseudonym_key_conn_id)
        except AirflowNotFoundException:
            # Only a connection that does not exist means "no key"; any other failure (a secrets backend
            # that is down, a malformed connection) propagates and stays retryable.
            self.log.warning("no connection %s: pseudonymize will refuse", self.pseudonym_key_conn_id)
            return None
        return connection.password.encode() if connection.password else None


class ManifestKeyHook(BaseHook):
    """The key of the subject manifest's hashes, kept as the password of an Airflow connection.

    It must differ from the pseudonym key (the engine refuses the run otherwise); only a keyed fingerprint
    of it is recorded. Without the connection no manifest is written, and revocation impact cannot answer
    for the run.

    :param manifest_key_conn_id: the connection whose password is the key.
    """

    conn_name_attr = "manifest_key_conn_id"
    default_conn_name = "phi_guard_manifest_key"
    conn_type = "phi_guard_manifest_key"
    hook_name = "PHI Guard subject manifest key"

    def __init__(self, manifest_key_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.manifest_key_conn_id = manifest_key_conn_id

    def get_key(self) -> bytes | None:
        """The key, or None when the connection does not exist or has no password."""
        try:
            connection = self.get_connection(self.manifest_key_conn_id)
        except AirflowNotFoundException:
            # As for the pseudonym key, only a missing connection means "no key"; other failures propagate.
            self.log.warning(
                "no connection %s: no subject manifest will be written", self.manifest_key_conn_id
            )
            return None
        return connection.password.encode() if connection.password else None


class ConsentRegistryHook(BaseHook):
    """A consent registry in a SQL database, read through an Airflow connection's own ``DbApiHook``.

    The connection (PostgreSQL through ``apache-airflow-providers-postgres``, or any other connection
    whose hook is a ``common.sql`` ``DbApiHook``) opens the DB-API connection; the core
    (``consent/sql.py``) reads the table or query into Arrow and validates it. The registry is named for
    lineage as the provider names the database (``postgres://host:port``, then
    ``database.schema.table``), never with the connection's password.

    :param consent_conn_id: the connection of the registry's database.
    :param table: the registry table, ``table`` or ``schema.table``.
    :param query: instead of a table, a query returning the registry's columns.
    """

    conn_name_attr = "consent_conn_id"
    default_conn_name = "phi_guard_consent"
    hook_name = "PHI Guard consent registry"

    def __init__(
        self, consent_conn_id: str = default_conn_name, *, table: str | None = None, query: str | None = None
    ) -> None:
        super().__init__()
        self.consent_conn_id = consent_conn_id
        self.table = table
        self.query = query

    def get_source(self) -> SqlConsentSource:
        """The registry as a source that the engine reads when it needs it (no query runs here).

        :raises ConsentRegistryError: the connection's hook is not a SQL database hook, or neither or
            both of table and query were given.
        """
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        from airflow_phi_guard.consent.sql import SqlConsentSource
        from airflow_phi_guard.exceptions import ConsentRegistryError

        connection = self.get_connection(self.consent_conn_id)
        try:
            hook = connection.get_hook()
        except Exception:
            # A connection type without a hook (generic, http...) cannot hold a registry.
            hook = None
        if not isinstance(hook, DbApiHook):
            raise ConsentRegistryError(
                [
                    f"consent connection {self.consent_conn_id} is of type {connection.conn_type}, whose "
                    "hook is no SQL database hook; give a database connection such as postgres"
                ]
            )
        return SqlConsentSource(
            connect=hook.get_conn,
            location=_database_location(hook, connection),
            table=self.table,
            query=self.query,
        )


def _database_location(hook: Any, connection: Any) -> DatabaseLocation:
    """The database as the provider's own OpenLineage support names it, or as the connection says."""
    from airflow_phi_guard.consent.sql import DatabaseLocation

    info = hook.get_openlineage_database_info(connection)
    if info is not None and info.authority:
        return DatabaseLocation(scheme=info.scheme, authority=info.authority, database=info.database or "")
    authority = f"{connection.host}:{connection.port}" if connection.port else str(connection.host or "")
    return DatabaseLocation(
        scheme=connection.conn_type, authority=authority, database=connection.schema or ""
    )
