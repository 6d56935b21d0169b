"""Matcher and bulk issuance against brute force."""

import numpy as np
import pytest

from genprint.errors import GenprintError
from genprint.fingerprint import hamming, pack, to_hex
from genprint.registry.codes import hex_to_words, issue_codes, too_close, words_to_hex
from genprint.registry.matcher import Matcher


@pytest.mark.parametrize("nbits", [32, 48, 64, 72, 128])
def test_matcher_matches_brute_force(nbits):
    rng = np.random.default_rng(nbits)
    words = pack(rng.integers(0, 2, (3000, nbits), dtype=np.uint8))
    tenants = rng.integers(0, 3, 3000).astype(np.int32)
    m = Matcher(nbits, capacity=10)  # grows while adding
    m.add(words[:1000], np.arange(1000), np.arange(1000) + 7, tenants[:1000])
    m.add(words[1000:], np.arange(1000, 3000), np.arange(1000, 3000) + 7, tenants[1000:])
    queries = pack(rng.integers(0, 2, (120, nbits), dtype=np.uint8))
    queries[:5] = words[[3, 500, 1500, 2999, 42]]  # exact hits
    for tenant in (None, 1):
        d = hamming(queries[:, None], words[None]).astype(float)
        if tenant is not None:
            d[:, tenants != tenant] = np.inf
        s = np.sort(d, axis=1)
        batch = m.nearest(queries, tenant, block=700)
        singles = [m.nearest(queries[i], tenant) for i in range(len(queries))]
        np.testing.assert_array_equal(batch.distance, s[:, 0])
        np.testing.assert_array_equal(batch.runner_up, s[:, 1])
        np.testing.assert_array_equal(d[np.arange(len(queries)), batch.index], s[:, 0])
        assert [int(x.distance[0]) for x in singles] == s[:, 0].tolist()
        assert [int(x.runner_up[0]) for x in singles] == s[:, 1].tolist()
        assert all(d[i, x.index[0]] == s[i, 0] for i, x in enumerate(singles))
    assert m.scope_count(None) == 3000 and m.scope_count(1) == int((tenants == 1).sum())
    assert m.nearest(queries[0], tenant_id=99).index[0] == -1  # a tenant without codes


def test_matcher_rejects_wrong_width():
    m = Matcher(64)
    with pytest.raises(GenprintError, match="words"):
        m.nearest(np.zeros((1, 2), np.uint64))


@pytest.mark.parametrize("nbits,min_distance", [(32, 5), (48, 3), (64, 4), (72, 11), (128, 20)])
def test_issue_codes_keeps_min_distance(nbits, min_distance):
    rng = np.random.default_rng(1)
    existing = issue_codes(400, nbits, min_distance, rng=rng)
    new = issue_codes(1500, nbits, min_distance, existing=existing, rng=rng)
    allw = np.concatenate([existing, new])
    d = hamming(allw[:, None], allw[None])
    np.fill_diagonal(d, 999)
    assert d.min() >= min_distance


def test_too_close_finds_every_close_pair():
    """The multi-index screen against an exhaustive one: no close pair may slip through."""
    rng = np.random.default_rng(2)
    base = pack(rng.integers(0, 2, (300, 32), dtype=np.uint8))
    near = base[rng.integers(0, 300, 200)] ^ pack(np.eye(32, dtype=np.uint8)[rng.integers(0, 32, 200)])  # distance 1
    words = np.concatenate([base, near, pack(rng.integers(0, 2, (200, 32), dtype=np.uint8))])
    reject = too_close(words, 300, 32, 6)
    assert reject[:200].all()
    kept = words[300:][~reject]
    assert len(kept) > 150  # the random ones mostly survive
    d = hamming(kept[:, None], np.concatenate([base, kept])[None])  # issued codes among themselves are not judged
    d[np.arange(len(kept)), 300 + np.arange(len(kept))] = 99
    assert d.min() >= 6
    # and exhaustively: every rejected candidate really was close to a base code or to an earlier candidate
    cand = words[300:]
    for j in np.flatnonzero(reject):
        assert hamming(cand[j][None], np.concatenate([base, cand[:j]])).min() < 6


def test_hex_words_roundtrip():
    rng = np.random.default_rng(3)
    for nbits in (32, 48, 64, 72, 128):
        bits = rng.integers(0, 2, (9, nbits), dtype=np.uint8)
        codes = [to_hex(b) for b in bits]
        np.testing.assert_array_equal(hex_to_words(codes, nbits), pack(bits))
        assert words_to_hex(pack(bits), nbits) == codes
    assert words_to_hex(np.zeros((0, 1), np.uint64), 48) == []
