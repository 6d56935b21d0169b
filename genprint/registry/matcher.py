"""In-memory nearest-fingerprint search for one model version, by Hamming distance over packed uint64 words.

A full vectorised scan (XOR + popcount) is exact, needs no index maintenance, and scans 10 million
64-bit codes in a few milliseconds per query; batches are scanned in blocks to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genprint import evidence
from genprint.errors import GenprintError
from genprint.registry.codes import n_words

NONE = 255  # distance sentinel for "no code" (codes have at most 128 bits)


@dataclass(frozen=True)
class Nearest:
    """For each query: row of the nearest code (-1 if none), its distance, and the runner-up distance (-1 if none)."""

    index: np.ndarray
    distance: np.ndarray
    runner_up: np.ndarray


@dataclass(frozen=True)
class BestScore:
    """For each read: row of the best-scoring code (-1 if none), its score and the runner-up's (NaN if none)."""

    index: np.ndarray
    score: np.ndarray
    runner_up: np.ndarray


class Matcher:
    """Packed codes with their fingerprint/user/tenant ids; rows are appended, never removed (fingerprints are never
    deleted)."""

    def __init__(self, nbits: int, capacity: int = 1024):
        self.nbits = nbits
        self.words_per_code = n_words(nbits)
        self._words = np.zeros((capacity, self.words_per_code), np.uint64)
        self._fingerprint_ids = np.zeros(capacity, np.int64)
        self._user_ids = np.zeros(capacity, np.int64)
        self._tenant_ids = np.zeros(capacity, np.int32)
        self.size = 0
        self._scopes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.size

    @property
    def words(self) -> np.ndarray:
        return self._words[: self.size]

    @property
    def fingerprint_ids(self) -> np.ndarray:
        return self._fingerprint_ids[: self.size]

    @property
    def user_ids(self) -> np.ndarray:
        return self._user_ids[: self.size]

    @property
    def tenant_ids(self) -> np.ndarray:
        return self._tenant_ids[: self.size]

    def clear(self) -> None:
        self.size = 0
        self._scopes.clear()

    def add(self, words: np.ndarray, fingerprint_ids, user_ids, tenant_ids) -> None:
        n = len(words)
        if n == 0:
            return
        if words.shape[1] != self.words_per_code:
            raise GenprintError(f"codes have {words.shape[1]} words; this matcher holds {self.nbits}-bit codes")
        if self.size + n > len(self._words):  # amortised growth
            cap = max(self.size + n, 2 * len(self._words))
            for name in ("_words", "_fingerprint_ids", "_user_ids", "_tenant_ids"):
                old = getattr(self, name)
                new = np.zeros((cap,) + old.shape[1:], old.dtype)
                new[: self.size] = old[: self.size]
                setattr(self, name, new)
        sl = slice(self.size, self.size + n)
        self._words[sl], self._fingerprint_ids[sl], self._user_ids[sl], self._tenant_ids[sl] = (
            words,
            fingerprint_ids,
            user_ids,
            tenant_ids,
        )
        self.size += n
        self._scopes.clear()

    def _scope(self, tenant_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, codes) of one tenant, cached until the next add: a scoped query scans only these."""
        if tenant_id not in self._scopes:
            rows = np.flatnonzero(self.tenant_ids == tenant_id)
            self._scopes[tenant_id] = (rows, np.ascontiguousarray(self._words[rows]))
        return self._scopes[tenant_id]

    def scope_count(self, tenant_id: int | None) -> int:
        return self.size if tenant_id is None else len(self._scope(tenant_id)[0])

    def nearest(self, queries: np.ndarray, tenant_id: int | None = None, block: int = 1 << 16) -> Nearest:
        """Nearest and runner-up codes for (Q, words) packed queries, optionally only among one tenant's codes.
        Not thread-safe (scratch buffers are reused): callers serialise, as Registry does."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.uint64))
        if queries.shape[1] != self.words_per_code:
            raise GenprintError(f"queries have {queries.shape[1]} words; this matcher holds {self.nbits}-bit codes")
        rows, codes = (None, self.words) if tenant_id is None else self._scope(tenant_id)
        found = self._scan_one(queries[0], codes) if len(queries) == 1 else self._scan(queries, codes, block)
        if rows is not None:
            found = Nearest(
                np.where(found.index >= 0, rows[np.maximum(found.index, 0)] if len(rows) else -1, -1),
                found.distance,
                found.runner_up,
            )
        return found

    def best_scores(self, logits: np.ndarray, tenant_id: int | None = None) -> BestScore:
        """Soft matching (genprint.evidence): for each read's logits (Q, nbits), the code with the highest score, its
        score and the runner-up's, optionally among one tenant's codes."""
        logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
        if logits.shape[1] != self.nbits:
            raise GenprintError(f"logits have {logits.shape[1]} bits; this matcher holds {self.nbits}-bit codes")
        rows, codes = (None, self.words) if tenant_id is None else self._scope(tenant_id)
        index = np.full(len(logits), -1, np.int64)
        best, second = np.full(len(logits), np.nan), np.full(len(logits), np.nan)
        for q, read in enumerate(logits):
            if not len(codes):
                continue
            s = evidence.scores(codes, read)
            i = int(s.argmax())
            index[q], best[q] = i, s[i]
            if len(s) > 1:
                s[i] = -np.inf
                second[q] = s.max()
        if rows is not None:
            index = np.where(index >= 0, rows[np.maximum(index, 0)] if len(rows) else -1, -1)
        return BestScore(index, best, second)

    def _scan_one(self, query: np.ndarray, codes: np.ndarray) -> Nearest:
        """One query: XOR and popcount into reused buffers (fresh 80 MB temporaries per query cost more than the
        maths)."""
        n = len(codes)
        if n == 0:
            return Nearest(np.array([-1]), np.array([-1]), np.array([-1]))
        if getattr(self, "_buf_n", 0) < n:
            self._xor, self._dist, self._tmp, self._buf_n = (
                np.empty(n, np.uint64),
                np.empty(n, np.uint8),
                np.empty(n, np.uint8),
                n,
            )
        xor, dist = self._xor[:n], self._dist[:n]
        np.bitwise_xor(codes[:, 0], query[0], out=xor)
        np.bitwise_count(xor, out=dist)
        for w in range(1, self.words_per_code):
            np.bitwise_xor(codes[:, w], query[w], out=xor)
            np.add(dist, np.bitwise_count(xor, out=self._tmp[:n]), out=dist)
        best = int(dist.argmin())
        d1 = int(dist[best])
        dist[best] = NONE
        d2 = int(dist.min()) if n > 1 else -1
        return Nearest(np.array([best]), np.array([d1]), np.array([d2]))

    def _scan(self, queries: np.ndarray, codes: np.ndarray, block: int) -> Nearest:
        q, size = len(queries), len(codes)
        best_i = np.full(q, -1, np.int64)
        best_d = np.full(q, NONE, np.int64)
        second_d = np.full(q, NONE, np.int64)
        rows_per_block = max(1, (1 << 22) // max(block, 1))  # ~4M distances (uint8) in flight
        for r0 in range(0, q, rows_per_block):
            qs = queries[r0 : r0 + rows_per_block]
            rows = np.arange(len(qs))
            for c0 in range(0, size, block):
                chunk = codes[c0 : min(c0 + block, size)]
                dist = np.bitwise_count(qs[:, None, 0] ^ chunk[None, :, 0])
                for w in range(1, self.words_per_code):
                    dist += np.bitwise_count(qs[:, None, w] ^ chunk[None, :, w])
                i1 = dist.argmin(axis=1)
                d1 = dist[rows, i1].astype(np.int64)
                dist[rows, i1] = NONE
                d2 = dist.min(axis=1).astype(np.int64) if dist.shape[1] > 1 else np.full(len(qs), NONE, np.int64)
                sl = slice(r0, r0 + len(qs))
                b, s = best_d[sl], second_d[sl]
                # second smallest of {b <= s} and {d1 <= d2}
                second_d[sl] = np.minimum(np.maximum(b, d1), np.minimum(s, d2))
                best_i[sl] = np.where(d1 < b, i1 + c0, best_i[sl])
                best_d[sl] = np.minimum(b, d1)
        found = best_d < NONE
        best_i[~found] = -1
        return Nearest(best_i, np.where(found, best_d, -1), np.where(second_d < NONE, second_d, -1))
