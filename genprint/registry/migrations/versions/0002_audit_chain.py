"""The audit log's hash chain: each row holds sha256(previous row's chain + the row), so an edit shows.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before this revision keep a NULL chain: `genprint audit verify` reports them as unchained.
    op.add_column("audit_log", sa.Column("chain", sa.String(64), nullable=True))  # SQLite adds it in place


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("chain")
