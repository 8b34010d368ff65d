"""A database URL's password, planted as a canary, appears in no message, chained error or log record of any
SQL user: consent source, surrogate mapping store, SQL audit trail, recipient registry."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator

import pytest

from airflow_phi_guard.consent.sources import consent_source
from airflow_phi_guard.consent.sql import sql_consent_source
from airflow_phi_guard.deid.surrogate import SqlMappingStore
from airflow_phi_guard.exceptions import (
    AuditTrailError,
    ConsentRegistryError,
    ConsentRegistryUnavailableError,
    LineageArchiveError,
    LineageArchiveUnavailableError,
    PhiGuardError,
    RecipientRegistryError,
    RecipientRegistryUnavailableError,
    SurrogateMappingError,
)
from airflow_phi_guard.lineage.archive import LineageArchive
from airflow_phi_guard.lineage.audit import ModelQuery
from airflow_phi_guard.recipients.sql import read_recipient_registry, sql_recipient_source
from airflow_phi_guard.sql import open_database, redact_url
from airflow_phi_guard.trail.chain import RecordKind, TrailEntry
from airflow_phi_guard.trail.records import append_decision
from airflow_phi_guard.trail.sql import SqlTrail
from airflow_phi_guard.trail.store import open_trail

#: A plain password, and one with the characters a URL parser takes for path, fragment and query, which
#: SQLAlchemy reads as part of the password. Each piece must stay hidden.
PASSWORDS = {
    "plain": ("CanaryPw7f3a91",),
    "special": ("CanaryA", "/", "CanaryB", "#", "CanaryC", "?", "CanaryD"),
}
PIECES = sorted({piece for pieces in PASSWORDS.values() for piece in pieces if piece.isalnum()})

#: The test server has trust authentication, so that a wrong password alone is accepted: a role that
#: does not exist is the credential it refuses.
MISSING_ROLE = "phi_guard_no_such_role"


def _url(kind: str, password: str, postgres_url: str) -> str:
    """The URL of one failure, with the password written raw, as a user may type it."""
    import sqlalchemy

    if kind == "unknown-dialect":
        return f"nosuchdialect://phi_guard:{password}@db.invalid:5432/test"
    if kind == "unreachable":
        return f"postgresql+psycopg://postgres:{password}@127.0.0.1:1/test"
    server = sqlalchemy.engine.make_url(postgres_url)
    return (
        f"{server.drivername}://{MISSING_ROLE}:{password}@{server.host or '127.0.0.1'}:{server.port or 5432}"
        f"/{server.database or 'test'}"
    )


def _entry() -> TrailEntry:
    return TrailEntry(kind=RecordKind.GATE_DECISION, verdict="passed", counts={"n": 1})


#: Every way each SQL user opens a database from a URL, and the errors it may raise for it.
USERS: dict[str, tuple[Callable[[str], object], tuple[type[Exception], ...]]] = {
    "consent source": (
        lambda url: sql_consent_source(url, table="consent").read(),
        (ConsentRegistryError, ConsentRegistryUnavailableError),
    ),
    "consent source by location": (
        lambda url: consent_source(url, table="consent").read(),
        (ConsentRegistryError, ConsentRegistryUnavailableError),
    ),
    "consent source by query": (
        lambda url: sql_consent_source(url, query="SELECT * FROM consent").read(),
        (ConsentRegistryError, ConsentRegistryUnavailableError),
    ),
    "surrogate mapping store": (
        lambda url: SqlMappingStore.from_url(url, "phi_guard_canary.surrogates").load("namespace"),
        (SurrogateMappingError,),
    ),
    "trail table store": (
        lambda url: SqlTrail(url, "phi_guard_canary.trail").append(_entry()),
        (AuditTrailError,),
    ),
    "trail by URL": (
        lambda url: open_trail(f"{url}#phi_guard_canary.trail").append(_entry()),
        (AuditTrailError,),
    ),
    "trail by URL without a table": (
        lambda url: append_decision(url, passed=True, recipient="vendor", agreement=None, rule="164.502(e)"),
        (AuditTrailError,),
    ),
    "lineage archive": (
        lambda url: LineageArchive(url, "phi_guard_canary.archive").events_for(ModelQuery("readmission")),
        (LineageArchiveError, LineageArchiveUnavailableError),
    ),
    "recipient registry": (
        lambda url: sql_recipient_source(url, table="recipients").read(),
        (RecipientRegistryError, RecipientRegistryUnavailableError),
    ),
    "recipient registry by location": (
        lambda url: read_recipient_registry(url, table="recipients"),
        (RecipientRegistryError, RecipientRegistryUnavailableError),
    ),
    "recipient registry by location without a table": (
        lambda url: read_recipient_registry(url),
        (RecipientRegistryError,),
    ),
}


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every error chained to it, explicitly or as suppressed context."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(linked for linked in (current.__cause__, current.__context__) if linked is not None)


def _leaks(text: str) -> list[str]:
    return [piece for piece in PIECES if piece in text]


@pytest.mark.parametrize("password", list(PASSWORDS), ids=list(PASSWORDS))
@pytest.mark.parametrize("failure", ["unknown-dialect", "unreachable", "bad-credentials"])
@pytest.mark.parametrize("user", list(USERS), ids=list(USERS))
def test_no_password_in_errors_or_logs(user, failure, password, postgres_url, caplog):
    url = _url(failure, "".join(PASSWORDS[password]), postgres_url)
    use, raised = USERS[user]
    caplog.set_level(logging.DEBUG)

    with pytest.raises(PhiGuardError) as caught:
        use(url)

    assert isinstance(caught.value, raised), f"{type(caught.value).__name__} is not the user's own error"
    for error in _chain(caught.value):
        assert not _leaks(str(error)), f"{type(error).__name__} in the chain shows the password"
        assert not _leaks(repr(error.args)), f"{type(error).__name__}'s arguments hold the password"
    assert not _leaks("".join(traceback.format_exception(caught.value)))
    for record in caplog.records:
        shown = record.getMessage() + (
            "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        )
        assert not _leaks(shown), f"log record of {record.name} shows the password"


@pytest.mark.parametrize("failure", ["unreachable", "bad-credentials"])
def test_an_unreachable_or_refusing_database_is_retryable(failure, postgres_url):
    """A server that is down, or refuses the login, leaves the registries' tasks retryable (their rule)."""
    url = _url(failure, "CanaryPw7f3a91", postgres_url)

    with pytest.raises(ConsentRegistryUnavailableError):
        sql_consent_source(url, table="consent").read()
    with pytest.raises(RecipientRegistryUnavailableError):
        sql_recipient_source(url, table="recipients").read()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://user:secret@host:5432/db", "postgresql+psycopg://user:***@host:5432/db"),
        ("nosuchdialect://user:secret@host/db", "nosuchdialect://user:***@host/db"),
        # SQLAlchemy reads each of these passwords whole, up to the "@" (see test_sqlalchemy_agrees)
        ("postgresql://user:se/cret@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:se#cret@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:se?cret@host/db", "postgresql://user:***@host/db"),
        # a driver may take a secret in the query, and the fragment is no part of a database's name
        ("postgresql://user@host/db?sslpassword=secret", "postgresql://user@host/db"),
        ("postgresql://host/db?password=secret#secret", "postgresql://host/db"),
        ("postgresql://user:@host/db", "postgresql://user:***@host/db"),
        (
            "postgresql+psycopg://postgres@127.0.0.1:5432/test",
            "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        ),
        ("/data/consent.csv", "/data/consent.csv"),
        ("memory://consent.parquet", "memory://consent.parquet"),
    ],
)
def test_the_redactor_shows_no_password(url, shown):
    assert redact_url(url) == shown
    assert "secret" not in redact_url(url)


@pytest.mark.parametrize("mark", ["/", "#", "?", "@", ":"])
def test_what_sqlalchemy_reads_as_the_password_is_never_shown(mark):
    """SQLAlchemy takes a password up to the first "@"; after a bare "@" in it, the rest is the host."""
    import sqlalchemy

    password = f"CanaryA{mark}CanaryB"
    url = f"postgresql://user:{password}@host/db"
    parsed = sqlalchemy.engine.make_url(url)

    assert parsed.password and parsed.password in password
    assert _leaks(password) == ["CanaryA", "CanaryB"]
    assert not _leaks(redact_url(url))


def test_a_mapping_store_names_its_database_without_secrets():
    """An engine from an Airflow hook may carry a password and query secrets: neither is described."""
    import sqlalchemy

    engine = sqlalchemy.create_engine("postgresql+psycopg://user:CanaryPw7f3a91@host/db?sslpassword=CanaryA")

    described = SqlMappingStore(engine, "phi_guard.surrogates").describe()

    assert described == "postgresql+psycopg://user:***@host/db table phi_guard.surrogates"


def test_open_database_refuses_a_backend_the_caller_cannot_use():
    with pytest.raises(ValueError, match="names the mysql backend; use postgresql") as caught:
        open_database("mysql://user:CanaryPw7f3a91@host/db", backends=("postgresql",))
    assert not _leaks(str(caught.value))
    assert caught.value.__context__ is None
