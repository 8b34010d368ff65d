"""The database helpers the SQL registries share: a connection for a block, and what a driver error means."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentRegistryUnavailableError,
    RecipientRegistryError,
    RecipientRegistryUnavailableError,
)
from airflow_phi_guard.sql import connected, statement_error

CANARY_ROW = "CANARY-ROW-VALUE-6161"
SOURCE = "sqlite:///registry.db.consent"


class TrackedConnection:
    """A real sqlite3 connection that remembers being closed."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path)
        self.closed = False

    def cursor(self) -> sqlite3.Cursor:
        return self.connection.cursor()

    def close(self) -> None:
        self.closed = True
        self.connection.close()


class TestConnected:
    def test_the_connection_is_closed_and_on_close_called_after_the_block(self, tmp_path: Path):
        opened, disposed = [], []

        def connect() -> TrackedConnection:
            opened.append(TrackedConnection(tmp_path / "registry.db"))
            return opened[-1]

        with connected(connect, SOURCE, ConsentRegistryUnavailableError, lambda: disposed.append(True)) as c:
            assert c.cursor().execute("SELECT 1").fetchone() == (1,)
            assert not c.closed

        assert opened[0].closed and disposed == [True]

    def test_an_error_in_the_block_still_closes_and_propagates_unchanged(self, tmp_path: Path):
        opened, disposed = [], []

        def connect() -> TrackedConnection:
            opened.append(TrackedConnection(tmp_path / "registry.db"))
            return opened[-1]

        problem = ConsentRegistryError(["the registry is empty"])
        with (
            pytest.raises(ConsentRegistryError) as caught,
            connected(connect, SOURCE, ConsentRegistryUnavailableError, lambda: disposed.append(True)),
        ):
            raise problem

        assert caught.value is problem
        assert opened[0].closed and disposed == [True]

    @pytest.mark.parametrize(
        "unavailable", [ConsentRegistryUnavailableError, RecipientRegistryUnavailableError]
    )
    def test_a_failed_connect_is_retryable_and_quotes_nothing_of_the_driver(
        self, tmp_path: Path, unavailable
    ):
        disposed = []

        def connect() -> sqlite3.Connection:
            # a folder cannot be opened as a database; the driver's message is replaced by a canary to show
            # that no part of it reaches the error
            try:
                return sqlite3.connect(tmp_path)
            except sqlite3.OperationalError:
                raise sqlite3.OperationalError(f"unable to open {CANARY_ROW}") from None

        with (
            pytest.raises(unavailable) as caught,
            connected(connect, SOURCE, unavailable, lambda: disposed.append(True)),
        ):
            pytest.fail("the block must not run")

        assert SOURCE in str(caught.value) and "OperationalError" in str(caught.value)
        assert CANARY_ROW not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert disposed == [True]


def _driver_error(tmp_path: Path, statement: str) -> sqlite3.Error:
    connection = sqlite3.connect(tmp_path / "registry.db")
    connection.execute("CREATE TABLE IF NOT EXISTS consent (subject_id TEXT UNIQUE)")
    connection.execute("INSERT OR IGNORE INTO consent VALUES (?)", (CANARY_ROW,))
    try:
        connection.execute(statement, (CANARY_ROW,) if "?" in statement else ())
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError("the statement did not fail")


class _StateError(Exception):
    """A driver error with a SQLSTATE, as psycopg 3 has one; sqlite3 has none."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"ERROR: relation does not exist at {CANARY_ROW}")
        self.sqlstate = sqlstate


# (driver error, retryable, what the refusal must say)
STATEMENT_ERRORS = [
    # a known SQLSTATE says what to fix
    (lambda tmp: _StateError("42P01"), False, "its table does not exist"),
    (lambda tmp: _StateError("42501"), False, "grant SELECT"),
    # a server shutting down (57P01) or a lost connection (08006) may heal: retryable
    (lambda tmp: _StateError("57P01"), True, None),
    (lambda tmp: _StateError("08006"), True, None),
    # a constraint violation (23505) is no outage: refused with the cause's class only
    (lambda tmp: _StateError("23505"), False, "cannot be read (_StateError)"),
    # sqlite3 gives no SQLSTATE: an OperationalError counts as an outage, an IntegrityError is refused
    (lambda tmp: _driver_error(tmp, "SELECT * FROM missing"), True, None),
    (lambda tmp: _driver_error(tmp, "INSERT INTO consent VALUES (?)"), False, "(IntegrityError)"),
]


@pytest.mark.parametrize(("make_error", "retryable", "says"), STATEMENT_ERRORS)
@pytest.mark.parametrize("registry", ["consent", "recipient"])
def test_what_a_driver_error_means(tmp_path: Path, make_error, retryable, says, registry):
    error = make_error(tmp_path)
    if registry == "consent":
        refused, unavailable = ConsentRegistryError, ConsentRegistryUnavailableError

        def refuse(problem: str) -> Exception:
            return ConsentRegistryError([f"consent registry {SOURCE} {problem}"])
    else:
        refused, unavailable = RecipientRegistryError, RecipientRegistryUnavailableError

        def refuse(problem: str) -> Exception:
            return RecipientRegistryError(SOURCE, None, None, problem)

    result = statement_error(error, SOURCE, refuse=refuse, unavailable=unavailable)

    assert isinstance(result, unavailable if retryable else refused)
    assert SOURCE in str(result)
    if says is not None:
        assert says in str(result)
    assert CANARY_ROW not in str(result)
