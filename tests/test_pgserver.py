"""The throwaway PostgreSQL server of tests/pgserver.py and its fixtures."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.pgserver import PostgresServer


def test_server_runs_on_loopback(postgres_server: PostgresServer):
    assert PostgresServer.available() is None
    url = postgres_server.url("postgres")
    assert url == f"postgresql+psycopg://shipyard@127.0.0.1:{postgres_server.port}/postgres"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select current_user")).scalar() == "shipyard"
            assert conn.execute(sa.text("show fsync")).scalar() == "off"
            assert conn.execute(sa.text("show max_connections")).scalar() == "300"
            assert conn.execute(sa.text("show server_encoding")).scalar() == "UTF8"
            assert conn.execute(sa.text("show listen_addresses")).scalar() == "127.0.0.1"
    finally:
        engine.dispose()


def test_table_round_trip(postgres_url: str):
    assert postgres_url.startswith("postgresql+psycopg://")
    metadata = sa.MetaData()
    items = sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    engine = sa.create_engine(postgres_url)
    try:
        assert engine.dialect.driver == "psycopg"
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(items.insert(), [{"name": "ä-one"}, {"name": "two"}])
        with engine.connect() as conn:
            assert conn.execute(sa.select(items.c.name).order_by(items.c.id)).scalars().all() == ["ä-one", "two"]
    finally:
        engine.dispose()


def test_databases_are_independent(postgres_server: PostgresServer, postgres_url: str):
    other_name = f"other_{uuid.uuid4().hex[:12]}"
    other_url = postgres_server.create_database(other_name)
    try:
        assert other_url != postgres_url
        first, second = sa.create_engine(postgres_url), sa.create_engine(other_url)
        try:
            with first.begin() as conn:
                conn.execute(sa.text("create table only_here (x int)"))
                conn.execute(sa.text("insert into only_here values (1)"))
            with second.connect() as conn:
                assert conn.execute(sa.text("select to_regclass('only_here')")).scalar() is None
            with first.connect() as conn:
                assert conn.execute(sa.text("select count(*) from only_here")).scalar() == 1
        finally:
            first.dispose()
            second.dispose()
    finally:
        postgres_server.drop_database(other_name)


_seen_urls: set[str] = set()


@pytest.mark.parametrize("run", [1, 2, 3])
def test_each_test_gets_a_fresh_database(postgres_url: str, run: int):
    assert postgres_url not in _seen_urls
    _seen_urls.add(postgres_url)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            tables = conn.execute(sa.text("select count(*) from pg_tables where schemaname = 'public'")).scalar()
            assert tables == 0
            conn.execute(sa.text("create table marker (run int)"))
            conn.execute(sa.text("insert into marker values (:run)"), {"run": run})
    finally:
        engine.dispose()


def test_fifty_concurrent_connections(postgres_url: str):
    engine = sa.create_engine(postgres_url, poolclass=NullPool)
    count = 50
    barrier = threading.Barrier(count, timeout=30)
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            with engine.connect() as conn:
                barrier.wait()  # all 50 connections are open at the same time
                backends = conn.execute(sa.text("select count(*) from pg_stat_activity where datname = current_database()")).scalar()
                barrier.wait()  # and stay open until every thread has counted them
                value = conn.execute(sa.text("select :n + 0 from pg_sleep(0.05)"), {"n": index}).scalar()
            with lock:
                results.append(value)
                assert backends >= count
        except BaseException as exc:  # noqa: BLE001  (reported below)
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        engine.dispose()
    assert not errors, errors[:3]
    assert sorted(results) == list(range(count))
