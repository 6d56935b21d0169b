"""The registry's tables (SQLAlchemy 2 ORM). Changes go through an Alembic migration in ./migrations.

Codes are stored as lower-case hex (MSB first, as genprint.fingerprint.to_hex writes them) so the
database stays readable and the unique constraints work on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """Only the SHA-256 of a key is kept: keys are 256-bit random tokens, so a fast hash is not brute-forceable."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_users_tenant_name"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64), unique=True)  # the bundle's config.json model_id
    nbits: Mapped[int] = mapped_column(Integer)
    min_distance: Mapped[int] = mapped_column(Integer)
    issued: Mapped[int] = mapped_column(
        BigId, default=0
    )  # fingerprints issued: lets matchers see cheaply whether to reload
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IssuanceRequest(Base):
    """One client request id per tenant: replaying it returns the same users instead of issuing again."""

    __tablename__ = "issuance_requests"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id", name="uq_issuance_tenant_request"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    request_id: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    params_digest: Mapped[str] = mapped_column(String(64))  # the same id with other parameters is an error
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Fingerprint(Base):
    __tablename__ = "fingerprints"
    __table_args__ = (
        UniqueConstraint("user_id", "model_version_id", name="uq_fingerprints_user_model"),
        UniqueConstraint("model_version_id", "code", name="uq_fingerprints_model_code"),
        Index("ix_fingerprints_model_version_id_id", "model_version_id", "id"),
    )  # matcher refresh
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    code: Mapped[str] = mapped_column(String(32))
    request_pk: Mapped[int | None] = mapped_column(ForeignKey("issuance_requests.id"), nullable=True, index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Append-only (database triggers refuse UPDATE and DELETE): issuance, revocation, every attribution query."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant_id", "at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict] = mapped_column(JSON)
    chain: Mapped[str | None] = mapped_column(String(64), nullable=True)  # genprint.registry.audit
