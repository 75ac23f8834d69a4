"""The migrations make the schema gitops/models.py declares, on SQLite and on PostgreSQL.

An empty database upgraded through every migration is compared with the models by Alembic's
autogenerate (``compare_metadata``): tables, columns, their types, nullability and server
defaults, indexes, unique constraints and foreign keys (with their ON DELETE). A model changed
without a migration, or a migration that makes something the model does not say, is a
difference, named here so the next migration can be written from it.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON

from gitops import db
from gitops.models import Base


def differences(url: str) -> list[str]:
    """What autogenerate would change to make the migrated database ``url`` what the models say, one line each."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                                   "compare_server_default": json_defaults_differ})
            return [described(difference) for difference in compare_metadata(context, Base.metadata)]
    finally:
        engine.dispose()


def json_defaults_differ(_context, _inspected_column, metadata_column, inspected_default, _metadata_default,
                         rendered_metadata_default) -> bool | None:
    """Whether a JSON column's server default differs, by its text: Alembic compares defaults on
    PostgreSQL by evaluating ``old = new``, and json has no ``=``. None: Alembic's own comparison."""
    if not isinstance(metadata_column.type, JSON):
        return None

    def literal(default: str | None) -> str | None:
        return None if default is None else default.split("::", 1)[0].strip("'")

    return literal(inspected_default) != literal(rendered_metadata_default)


def described(difference) -> str:
    """A difference as a line: ``modify_type cluster.name: database VARCHAR(63), models VARCHAR(64)``;
    ``add_index ix_...`` (something to add to the database), ``remove_...`` (something only it has)."""
    if isinstance(difference, list):  # the changes of one column
        return "; ".join(f"{op} {table}.{column}: database {shown(old)}, models {shown(new)}"
                         for op, _schema, table, column, _existing, old, new in difference)
    op, *rest = difference
    return f"{op} {rest[-1]!r}"


def shown(value) -> str:
    """A type or a server default as SQL text."""
    argument = getattr(value, "arg", value)
    return str(getattr(argument, "text", argument))


def test_upgrading_an_empty_database_gives_the_schema_the_models_declare(database_url):
    assert db.head_revision() is not None
    found = differences(database_url)
    assert found == [], "\n".join(found)
