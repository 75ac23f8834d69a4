"""Database engines, sessions and migrations.

Two databases are supported: a SQLite file (the embedded default, migrated on
start) and PostgreSQL through psycopg 3 (production, migrated by
``shipyard db upgrade``). The schema is Alembic's (``gitops/migrations``);
nothing creates tables behind its back. Alembic is imported only by the functions
that migrate or read revisions: every process that opens a database imports this
module, and only ``up``, ``serve`` and ``db`` ever look at a migration.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Connection, Engine, Table, bindparam, create_engine, event, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # pysqlite's own transaction handling defers BEGIN; take the write
            # lock at BEGIN instead (BEGIN IMMEDIATE), so two writers queue on
            # busy_timeout instead of failing on lock upgrade.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            # Read-only sessions ask for a deferred BEGIN, so readers never queue behind writers.
            deferred = connection.get_execution_options().get("sqlite_deferred")
            connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision``."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


# --- many rows in one statement ------------------------------------------------------------------


def _recordset(connection: Connection, table: Table, rows: list[dict[str, Any]],
               common: dict[str, Any]) -> tuple[Callable[[str], str], str, list[str], dict[str, Any]]:
    """``SELECT ... FROM json_to_recordset(...)`` of ``rows`` (one JSON document) and ``common`` (one value each),
    with the dialect's identifier quoting, the quoted column names and the parameters.

    One text parameter carries every row: PostgreSQL parses it faster than psycopg escapes
    arrays, and the statement is the same whatever the number of rows.
    """
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    names = list(rows[0])
    params: dict[str, Any] = {"rows": json.dumps(rows, separators=(",", ":"), default=_json_scalar)}
    record = ", ".join(f"{quote(n)} {table.c[n].type.compile(dialect=dialect)}" for n in names)
    selected = [f"r.{quote(n)}" for n in names]
    for index, (name, value) in enumerate(common.items()):
        params[f"k{index}"] = json.dumps(value) if isinstance(table.c[name].type, JSON) else value
        selected.append(f"CAST(:k{index} AS {table.c[name].type.compile(dialect=dialect)})")
    columns = [quote(name) for name in [*names, *common]]
    source = f"SELECT {', '.join(selected)} FROM json_to_recordset(CAST(:rows AS json)) AS r({record})"
    return quote, source, columns, params


def _json_scalar(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use utcnow()")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


def insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]], common: dict[str, Any] | None = None,
                conflict: tuple[str, ...] = (), update: tuple[str, ...] = ()) -> None:
    """INSERT ``rows`` (dicts with the same keys), each with the ``common`` values too.

    With ``conflict`` (a unique key's columns), a row whose key exists updates the ``update``
    columns instead, or, with no ``update`` columns, is left as it is (a duplicate taken as done).
    PostgreSQL gets one statement over the rows as one JSON document, whatever the number of rows
    (no row may repeat a key it updates); SQLite an executemany.
    """
    if not rows:
        return
    common = common or {}
    if connection.dialect.name == "postgresql":
        quote, source, columns, params = _recordset(connection, table, rows, common)
        sql = f"INSERT INTO {quote(table.name)} ({', '.join(columns)}) {source}"
        if conflict and not update:
            sql += f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING"
        elif conflict:
            sql += (f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO UPDATE SET "
                    + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update))
        connection.execute(text(sql), params)
        return
    statement = sqlite_insert(table)
    if conflict and not update:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    elif conflict:
        statement = statement.on_conflict_do_update(index_elements=list(conflict),
                                                    set_={c: statement.excluded[c] for c in update})
    connection.execute(statement, [{**row, **common} for row in rows])


def update_many(connection: Connection, table: Table, key: str, rows: list[dict[str, Any]],
                common: dict[str, Any] | None = None) -> None:
    """UPDATE each row of ``table`` whose ``key`` column equals a row's ``key``, to that row's other values.

    PostgreSQL gets one ``UPDATE ... FROM json_to_recordset(...)``; SQLite an executemany.
    """
    if not rows:
        return
    common = common or {}
    if connection.dialect.name == "postgresql":
        quote, source, columns, params = _recordset(connection, table, rows, common)
        names = [*rows[0], *common]
        sets = ", ".join(f"{quote(n)} = v.{quote(n)}" for n in names if n != key)
        sql = (f"UPDATE {quote(table.name)} SET {sets} FROM ({source}) AS v({', '.join(columns)}) "
               f"WHERE {quote(table.name)}.{quote(key)} = v.{quote(key)}")
        connection.execute(text(sql), params)
        return
    statement = (update(table).where(table.c[key] == bindparam(f"b_{key}"))
                 .values({n: bindparam(f"b_{n}") for n in [*rows[0], *common] if n != key}))
    connection.execute(statement, [{f"b_{n}": v for n, v in {**row, **common}.items()} for row in rows])


__all__ = ["make_engine", "session_factory", "upgrade", "current_revision", "head_revision", "insert_many",
           "update_many"]
