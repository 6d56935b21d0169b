"""Alembic environment. The registry calls upgrade programmatically with an open connection in
config.attributes["connection"]; the alembic CLI works too with -x url=... (or sqlalchemy.url)."""

from alembic import context
from sqlalchemy import create_engine

from genprint.registry.schema import Base

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        run(conn)
