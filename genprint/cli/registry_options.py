"""Options shared by the registry subcommands (tenants, users, attribute): where the registry is, and who is asking."""

from __future__ import annotations

import argparse
import os


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", default=None,
                        help="registry database URL (sqlite:///path.db or postgresql+psycopg://...); default $GENPRINT_DB, "
                             "else ~/.genprint/registry.db")


def add_api_key_option(parser: argparse.ArgumentParser, required_for: str) -> None:
    parser.add_argument("--api-key", default=None, help=f"tenant API key ({required_for}); default $GENPRINT_API_KEY")
    parser.add_argument("--tenant", default=None, help="tenant name; checked against the API key's tenant")


def open_registry(args):
    from genprint.registry import Registry

    return Registry(args.db)


def authenticated_tenant(registry, args, required: bool = True):
    """The tenant of --api-key / $GENPRINT_API_KEY (None when not required and none given)."""
    from genprint.errors import GenprintError

    key = args.api_key or os.environ.get("GENPRINT_API_KEY")
    if not key and not required:
        if args.tenant:
            raise GenprintError("--tenant needs the tenant's API key (--api-key or $GENPRINT_API_KEY)")
        return None
    tenant = registry.authenticate(key)
    if args.tenant and args.tenant != tenant.name:
        raise GenprintError(f"the API key belongs to another tenant than {args.tenant!r}")
    return tenant
