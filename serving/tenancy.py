"""Who is calling and what they may touch, on top of the registry (genprint.registry): API key -> tenant, a tenant acts
for its own users only, and tenants named in the `moderator_tenants` setting attribute across all tenants."""

from __future__ import annotations

from dataclasses import dataclass

from genprint.attribution import fingerprint_id
from genprint.errors import GenprintError
from genprint.registry import Registry, Tenant


class ForbiddenError(GenprintError):
    """Authenticated, but this tenant may not act for that one (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    tenant: Tenant
    moderator: bool

    @property
    def name(self) -> str:
        return self.tenant.name

    @property
    def scope(self) -> Tenant | None:
        """The attribution candidates: the tenant's own users, or everyone's for a moderator."""
        return None if self.moderator else self.tenant


class Tenancy:
    def __init__(self, registry_url: str, fpr: float, moderator_tenants: list[str]):
        self.registry = Registry(registry_url or None, fpr=fpr)
        self.moderators = set(moderator_tenants)

    def authenticate(self, api_key: str | None) -> Principal:
        tenant = self.registry.authenticate(api_key)  # AuthenticationError -> 401
        return Principal(tenant, tenant.name in self.moderators)

    def fingerprint(self, principal: Principal, tenant: str, user: str, model_id: str) -> tuple[str, str]:
        """(public fingerprint id, hex code) of `tenant`'s `user` for generation; only the key's own tenant."""
        if tenant != principal.name:
            raise ForbiddenError(
                f"this API key belongs to tenant {principal.name!r}; it cannot generate for tenant {tenant!r}"
            )
        code = self.registry.fingerprint_of(
            principal.tenant, user, model_id, active_only=True
        )  # NotFoundError -> 404, RevokedError -> 403
        return fingerprint_id(model_id, tenant, user), code

    def list_users(
        self, principal: Principal, model_id: str, tenant: str | None, limit: int, offset: int
    ) -> list[dict]:
        """A page of one tenant's users: the caller's own, or any tenant's for a moderator."""
        if tenant is None or tenant == principal.name:
            target = principal.tenant
        elif principal.moderator:
            target = self.registry.tenant(tenant)
        else:
            raise ForbiddenError(f"this API key belongs to tenant {principal.name!r}; it cannot list tenant {tenant!r}")
        return [
            {
                "tenant": u.tenant,
                "user": u.name,
                "revoked": u.revoked,
                "fingerprint_id": fingerprint_id(model_id, u.tenant, u.name) if u.fingerprint else None,
            }
            for u in self.registry.list_users(target, model_id, limit=limit, offset=offset)
        ]
