"""`genprint tenants create NAME | list`: administer tenants (needs direct access to the registry database)."""

from __future__ import annotations

import argparse
import json

from genprint.cli.options import add_db_option, open_registry


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tenants",
        help="create and list tenants (administrator)",
        description="Tenants own users. Anyone who can open the registry database is an administrator.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a tenant and print its API key (shown only once)")
    create.add_argument("name")
    create.add_argument("--json", action="store_true", help='print {"tenant", "api_key"} as JSON')
    add_db_option(create)
    listing = sub.add_parser("list", help="list tenants with their user counts")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_db_option(listing)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry:
        if args.action == "create":
            tenant, key = registry.create_tenant(args.name)
            if args.json:
                print(json.dumps({"tenant": tenant.name, "api_key": key}))
            else:
                print(f"tenant {tenant.name} created\nAPI key (shown only now; store it safely): {key}")
            return 0
        for row in registry.list_tenants():
            if args.json:
                print(json.dumps({**row, "created_at": row["created_at"].isoformat()}))
            else:
                print(f"{row['tenant']}\t{row['users']} users\tcreated {row['created_at']:%Y-%m-%d %H:%M}")
    return 0
