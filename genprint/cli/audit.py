"""`genprint audit verify | grant ROLE`: check the audit log's hash chain; give serving a role that cannot edit it."""

from __future__ import annotations

import argparse
import json

from genprint.cli.options import add_db_option, open_registry


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="verify the audit log's hash chain; grant a least-privilege role (administrator)",
        description="Every audit row is chained by hash to the one before it: `verify` finds the first row that was "
        "changed, removed or inserted, and prints the head to keep elsewhere. `grant` (PostgreSQL) gives a "
        "serving role reads, issuance and appends only, run as the role that owns the tables.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = sub.add_parser("verify", help="walk the hash chain; exit 1 when it is broken")
    verify.add_argument("--json", action="store_true")
    add_db_option(verify)
    grant = sub.add_parser("grant", help="PostgreSQL: grant ROLE what serving needs, and nothing that edits the log")
    grant.add_argument("role")
    add_db_option(grant)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry:
        if args.action == "grant":
            registry.grant_service_role(args.role)
            print(f"granted {args.role} reads, issuance, revocation and audit appends on {registry.safe_url}")
            return 0
        report = registry.verify_audit()
    if args.json:
        print(json.dumps(report))
    elif report["ok"]:
        print(
            f"audit log intact: {report['rows_checked']} chained rows "
            f"({report['rows_before_the_chain']} from before the chain); head {report['head']}"
        )
    else:
        print(
            f"audit log BROKEN at row {report['first_broken_row']} "
            f"(after {report['rows_checked']} good rows): changed, removed or inserted there"
        )
    return 0 if report["ok"] else 1
