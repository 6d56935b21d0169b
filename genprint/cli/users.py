"""`genprint users register|revoke|list`: a tenant's users and their fingerprints (needs the tenant's API key)."""

from __future__ import annotations

import argparse
import json
import sys

from genprint.cli.options import (
    add_api_key_option,
    add_db_option,
    add_model_option,
    authenticated_tenant,
    open_registry,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "users",
        help="register, revoke and list a tenant's users",
        description="Tenant-scoped: authenticate with --api-key or $GENPRINT_API_KEY.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    register = sub.add_parser(
        "register", help="issue fingerprints for a model to new or existing users (one transaction)"
    )
    register.add_argument("names", nargs="*", metavar="NAME", help="user names (or use --count)")
    register.add_argument("--count", type=int, help="register this many new users with generated names (bulk)")
    add_model_option(register, "the model whose fingerprints to issue (its model_id and fingerprint length)")
    register.add_argument(
        "--request-id", help="client request id: repeating the command with it returns the same users"
    )
    register.add_argument(
        "--min-distance",
        type=int,
        help="minimum Hamming distance between this model's fingerprints "
        "(fixed when the model's first users are registered)",
    )
    register.add_argument("--json", action="store_true", help='one {"user", "fingerprint"} JSON object per line')

    revoke = sub.add_parser("revoke", help="revoke a user (kept: attribution still names them, marked revoked)")
    revoke.add_argument("name")
    revoke.add_argument("--reason", help="recorded in the audit log")

    listing = sub.add_parser("list", help="list users (with their fingerprints for --model)")
    listing.add_argument("--model", metavar="BUNDLE", help="show each user's fingerprint for this model bundle")
    listing.add_argument("--limit", type=int, default=None)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    for p in (register, revoke, listing):
        add_db_option(p)
        add_api_key_option(p, "required")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genprint.bundle import read_config
    from genprint.cli.options import model_dir
    from genprint.errors import GenprintError

    # register issues codes for a model (the shipped one by default); list shows codes only for an explicit --model
    model = read_config(model_dir(args)) if args.action == "register" or getattr(args, "model", None) else None
    with open_registry(args) as registry:
        tenant = authenticated_tenant(registry, args)
        if args.action == "register":
            if args.count is not None and args.names:
                raise GenprintError("give user names or --count, not both")
            if args.count is None and not args.names:
                raise GenprintError("give user names or --count N")
            from rich.console import Console

            with Console(stderr=True).status(
                f"issuing {args.count or len(args.names)} fingerprints for model {model['model_id']}"
            ):
                issued = registry.register_users(
                    tenant,
                    model["model_id"],
                    int(model["nbits"]),
                    count=args.count,
                    names=args.names or None,
                    request_id=args.request_id,
                    min_distance=args.min_distance,
                )
            out = sys.stdout
            for user, code in issued:
                out.write(json.dumps({"user": user, "fingerprint": code}) + "\n" if args.json else f"{user}\t{code}\n")
            note = " (replayed: this request id was already done)" if issued.replayed else ""
            print(
                f"{len(issued)} users of tenant {tenant.name} hold fingerprints for model {model['model_id']}{note}",
                file=sys.stderr,
            )
        elif args.action == "revoke":
            registry.revoke(tenant, args.name, reason=args.reason)
            print(f"revoked {args.name} (tenant {tenant.name})")
        else:
            for u in registry.list_users(
                tenant, model["model_id"] if model else None, limit=args.limit, offset=args.offset
            ):
                if args.json:
                    print(
                        json.dumps(
                            {
                                "user": u.name,
                                "created_at": u.created_at.isoformat(),
                                "revoked": u.revoked,
                                **({"fingerprint": u.fingerprint} if model else {}),
                            }
                        )
                    )
                else:
                    print(
                        "\t".join(
                            [u.name, "revoked" if u.revoked else "active"] + ([u.fingerprint or "-"] if model else [])
                        )
                    )
    return 0
