"""Hooks that fetch what the core needs from Airflow connections: keys, registry databases, Spark."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from airflow_phi_guard.consent.sql import SqlConsentSource
    from airflow_phi_guard.recipients.sql import SqlRecipientSource
    from airflow_phi_guard.sql import DatabaseLocation


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


class DateShiftKeyHook(BaseHook):
    """The key of the ``date-shift`` treatment, kept as the password of an Airflow connection.

    Each subject's shift is a keyed hash of the subject id under this key, so the key is as secret as the
    pseudonym key and is kept the same way; only a keyed fingerprint of it is recorded.

    :param date_shift_key_conn_id: the connection whose password is the key.
    """

    conn_name_attr = "date_shift_key_conn_id"
    default_conn_name = "phi_guard_date_shift_key"
    conn_type = "phi_guard_date_shift_key"
    hook_name = "PHI Guard date shift key"

    def __init__(self, date_shift_key_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.date_shift_key_conn_id = date_shift_key_conn_id

    def get_key(self) -> bytes | None:
        """The key, or None when the connection does not exist or has no password."""
        try:
            connection = self.get_connection(self.date_shift_key_conn_id)
        except AirflowNotFoundException:
            # As for the pseudonym key, only a missing connection means "no key"; other failures propagate.
            self.log.warning("no connection %s: date-shift will refuse", self.date_shift_key_conn_id)
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
    ``database.schema.table``), never with the connection's password. A connection of this package's own
    type, ``phi_guard_consent_registry``, names a PostgreSQL database by its standard fields (host, port,
    user, password, and the database as the schema field) and is read through ``PostgresHook``.

    :param consent_conn_id: the connection of the registry's database.
    :param table: the registry table, ``table`` or ``schema.table``.
    :param query: instead of a table, a query returning the registry's columns.
    """

    conn_name_attr = "consent_conn_id"
    default_conn_name = "phi_guard_consent"
    conn_type = "phi_guard_consent_registry"
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
        from airflow_phi_guard.consent.sql import SqlConsentSource
        from airflow_phi_guard.exceptions import ConsentRegistryError

        hook, connection = sql_database_hook(
            self.consent_conn_id,
            "consent",
            lambda message: ConsentRegistryError([message]),
            own_type=self.conn_type,
        )
        return SqlConsentSource(
            connect=hook.get_conn,
            location=_database_location(hook, connection),
            table=self.table,
            query=self.query,
        )


def sql_database_hook(
    conn_id: str,
    what: str,
    refuse: Callable[[str], Exception],
    *,
    own_type: str | None = None,
) -> tuple[Any, Any]:
    """The ``common.sql`` ``DbApiHook`` of a connection, and the connection; a connection whose hook is
    not one is refused.

    A connection of ``own_type`` (one of this package's registry types) names a PostgreSQL database by its
    standard fields and is read through ``PostgresHook``; any other connection through its own hook.

    :param conn_id: the connection.
    :param what: what the database holds, for the message (``consent``, ``surrogate mapping``).
    :param refuse: builds the caller's error from the message.
    :param own_type: this package's connection type that means PostgreSQL, if the caller has one.
    :raises Exception: ``refuse(message)`` when the connection's type has no SQL database hook.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    connection = BaseHook.get_connection(conn_id)
    hook: Any
    if own_type is not None and connection.conn_type == own_type:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        hook = PostgresHook(postgres_conn_id=conn_id)
    else:
        try:
            hook = connection.get_hook()
        except Exception:
            # A connection type without a hook (generic, http...) cannot hold a table.
            hook = None
    if not isinstance(hook, DbApiHook):
        accepted = f"{own_type}, or postgres" if own_type else "such as postgres"
        raise refuse(
            f"{what} connection {conn_id} is of type {connection.conn_type}, whose hook is no SQL database "
            f"hook; give a database connection ({accepted})"
        )
    return hook, connection


def _database_location(hook: Any, connection: Any) -> DatabaseLocation:
    """The database as the provider's own OpenLineage support names it, or as the connection says."""
    from airflow_phi_guard.sql import DatabaseLocation

    info = hook.get_openlineage_database_info(connection)
    if info is not None and info.authority:
        return DatabaseLocation(scheme=info.scheme, authority=info.authority, database=info.database or "")
    authority = f"{connection.host}:{connection.port}" if connection.port else str(connection.host or "")
    return DatabaseLocation(
        scheme=connection.conn_type, authority=authority, database=connection.schema or ""
    )


class RecipientRegistryHook(BaseHook):
    """A recipient registry in a SQL table, read through the connection of the database that holds it.

    Like :class:`ConsentRegistryHook`: a connection of this package's type ``phi_guard_recipient_registry``
    names a PostgreSQL database by its standard fields (the database as the schema field) and is read
    through ``PostgresHook``; any other connection whose hook is a ``common.sql`` ``DbApiHook`` (postgres,
    ...) is read through that hook. The core (``recipients/sql.py``) validates the rows into the same
    registry as a YAML file. The registry is named as the provider names the database, never with the
    connection's password.

    :param recipient_registry_conn_id: the connection of the registry's database.
    :param table: the registry table, ``table`` or ``schema.table``.
    """

    conn_name_attr = "recipient_registry_conn_id"
    default_conn_name = "phi_guard_recipient_registry"
    conn_type = "phi_guard_recipient_registry"
    hook_name = "PHI Guard recipient registry"

    def __init__(self, recipient_registry_conn_id: str = default_conn_name, *, table: str) -> None:
        super().__init__()
        self.recipient_registry_conn_id = recipient_registry_conn_id
        self.table = table

    def get_source(self) -> SqlRecipientSource:
        """The registry as a source that is read when :meth:`SqlRecipientSource.read` is called.

        :raises RecipientRegistryError: the connection's hook is not a SQL database hook, or the table name
            is not plain.
        """
        from airflow_phi_guard.exceptions import RecipientRegistryError
        from airflow_phi_guard.recipients.sql import SqlRecipientSource

        conn_id = self.recipient_registry_conn_id
        hook, connection = sql_database_hook(
            conn_id,
            "recipient registry",
            lambda message: RecipientRegistryError(f"connection {conn_id}", None, None, message),
            own_type=self.conn_type,
        )
        return SqlRecipientSource(
            connect=hook.get_conn, location=_database_location(hook, connection), table=self.table
        )


class SparkSessionHook(BaseHook):
    """A Spark session for the Spark engine, from a connection of type ``spark`` (the type of the Apache
    Spark provider): its host, with the port when one is set, is the master URL, such as ``local[4]``,
    ``yarn`` or ``spark://host`` with port 7077.

    :param spark_conn_id: the connection.
    """

    conn_name_attr = "spark_conn_id"
    default_conn_name = "spark_default"
    conn_type = "spark"
    hook_name = "Spark"

    def __init__(self, spark_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.spark_conn_id = spark_conn_id

    def master(self) -> str:
        """The master URL the connection names.

        :raises ValueError: the connection has no host.
        """
        connection = self.get_connection(self.spark_conn_id)
        if not connection.host:
            raise ValueError(f"connection {self.spark_conn_id} names no Spark master in its host")
        return f"{connection.host}:{connection.port}" if connection.port else connection.host

    def get_session(self, app_name: str = "phi-guard") -> Any:
        """The session (an existing one of this process is reused, as ``getOrCreate`` does, whatever its
        master).

        :param app_name: the Spark application's name.
        """
        import os
        import sys

        from pyspark.sql import SparkSession

        from airflow_phi_guard.engine.spark import session_for

        # Known shortcoming: these two lines repeat the environment setup of engine.spark.local_session,
        # which fixes a local master; a public helper there that sets up the Python workers for any master
        # would let both call it.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        master = self.master()
        session = session_for(SparkSession.builder.master(master), app_name)
        running = session.sparkContext.master
        if running == master:
            self.log.info("Spark session on master %s from connection %s", master, self.spark_conn_id)
        else:
            self.log.warning(
                "connection %s names Spark master %s, but this process already runs a session on master %s, "
                "which is used",
                self.spark_conn_id,
                master,
                running,
            )
        return session
