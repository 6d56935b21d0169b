"""The fingerprint registry: who got which fingerprint for which model, and who made an image.

from genprint.registry import Registry
reg = Registry("sqlite:///registry.db")          # or postgresql+psycopg://..., or None for $GENPRINT_DB
tenant, key = reg.create_tenant("acme")          # key shown once
tenant = reg.authenticate(key)
issued = reg.register_users(tenant, model_id, nbits, names=["alice"], request_id="r1")
answer = reg.attribute(extracted_bits, model_id)  # Attribution(attributed, tenant, user, distance, p_value, ...)
"""

from genprint.registry.store import (
    DEFAULT_FPR,
    Attribution,
    AuthenticationError,
    Issuance,
    NotFoundError,
    Registry,
    RevokedError,
    Tenant,
    UserRecord,
    default_url,
)

__all__ = [
    "Registry",
    "Tenant",
    "UserRecord",
    "Issuance",
    "Attribution",
    "AuthenticationError",
    "NotFoundError",
    "RevokedError",
    "DEFAULT_FPR",
    "default_url",
]
