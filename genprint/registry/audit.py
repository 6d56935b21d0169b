"""The audit log's hash chain: every row carries sha256(previous row's chain + the row's own content), so a row
changed, removed or slipped in between shows as the first row whose chain no longer follows.

The database's triggers already refuse UPDATE and DELETE, but a role that owns the tables can drop them; the chain
makes such tampering detectable after the fact (`genprint audit verify`). Truncating the newest rows leaves a valid
shorter chain: keep the head that `verify` prints somewhere the database's owner cannot write, and compare.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

GENESIS = "0" * 64
# PostgreSQL: writers of audit rows take this transaction-scoped advisory lock, so the chain has one order.
CHAIN_LOCK = 7235047


def canonical(at: datetime, tenant_id: int | None, action: str, detail) -> str:
    """The row as hashed: fixed key order, UTC time to the microsecond (as every backend stores it)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    body = {"at": at.isoformat(timespec="microseconds"), "tenant_id": tenant_id, "action": action, "detail": detail}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def link(previous: str, at: datetime, tenant_id: int | None, action: str, detail) -> str:
    return hashlib.sha256((previous + canonical(at, tenant_id, action, detail)).encode()).hexdigest()


def verify(rows) -> dict:
    """rows: (id, at, tenant_id, action, detail, chain) in id order. The rows before the chain began (NULL chain,
    written before it existed) are counted apart; every later row must follow from the one before."""
    previous, checked, unchained, first_bad = GENESIS, 0, 0, None
    for row_id, at, tenant_id, action, detail, chain in rows:
        if chain is None and checked == 0:
            unchained += 1
            continue
        expected = link(previous, at, tenant_id, action, detail)
        if chain != expected:
            first_bad = row_id
            break
        previous, checked = chain, checked + 1
    return {
        "ok": first_bad is None,
        "rows_checked": checked,
        "rows_before_the_chain": unchained,
        "first_broken_row": first_bad,
        "head": previous,
    }
