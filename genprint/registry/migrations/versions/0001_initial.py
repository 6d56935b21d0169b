"""Initial registry schema: tenants, API keys, users, model versions, issuance requests, fingerprints, audit log.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table("tenants",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(128), nullable=False, unique=True),
                    sa.Column("created_at", TS, nullable=False))
    op.create_table("api_keys",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False, index=True),
                    sa.Column("prefix", sa.String(16), nullable=False),
                    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
                    sa.Column("created_at", TS, nullable=False),
                    sa.Column("revoked_at", TS, nullable=True))
    op.create_table("users",
                    sa.Column("id", BigId, primary_key=True),
                    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
                    sa.Column("name", sa.String(256), nullable=False),
                    sa.Column("created_at", TS, nullable=False),
                    sa.Column("revoked_at", TS, nullable=True),
                    sa.UniqueConstraint("tenant_id", "name", name="uq_users_tenant_name"))
    op.create_table("model_versions",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("model_id", sa.String(64), nullable=False, unique=True),
                    sa.Column("nbits", sa.Integer, nullable=False),
                    sa.Column("min_distance", sa.Integer, nullable=False),
                    sa.Column("issued", BigId, nullable=False, server_default="0"),
                    sa.Column("created_at", TS, nullable=False))
    op.create_table("issuance_requests",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
                    sa.Column("request_id", sa.String(128), nullable=False),
                    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
                    sa.Column("params_digest", sa.String(64), nullable=False),
                    sa.Column("created_at", TS, nullable=False),
                    sa.UniqueConstraint("tenant_id", "request_id", name="uq_issuance_tenant_request"))
    op.create_table("fingerprints",
                    sa.Column("id", BigId, primary_key=True),
                    sa.Column("user_id", BigId, sa.ForeignKey("users.id"), nullable=False),
                    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
                    sa.Column("code", sa.String(32), nullable=False),
                    sa.Column("request_pk", sa.Integer, sa.ForeignKey("issuance_requests.id"), nullable=True, index=True),
                    sa.Column("issued_at", TS, nullable=False),
                    sa.UniqueConstraint("user_id", "model_version_id", name="uq_fingerprints_user_model"),
                    sa.UniqueConstraint("model_version_id", "code", name="uq_fingerprints_model_code"))
    op.create_index("ix_fingerprints_model_version_id_id", "fingerprints", ["model_version_id", "id"])
    op.create_table("audit_log",
                    sa.Column("id", BigId, primary_key=True),
                    sa.Column("at", TS, nullable=False),
                    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=True),
                    sa.Column("action", sa.String(32), nullable=False),
                    sa.Column("detail", sa.JSON, nullable=False))
    op.create_index("ix_audit_log_tenant_at", "audit_log", ["tenant_id", "at"])
    # The audit log is append-only at the database level, not just by convention.
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$")
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("audit_log", "fingerprints", "issuance_requests", "model_versions", "users", "api_keys", "tenants"):
        op.drop_table(table)
