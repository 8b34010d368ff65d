"""Hooks that fetch the secrets the core needs from Airflow connections."""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException


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
