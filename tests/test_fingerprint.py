import numpy as np
import pytest
from scipy.stats import binom

from genprint.errors import GenprintError
from genprint.fingerprint import (
    Decision,
    corrected_p_value,
    from_hex,
    hamming,
    min_agreeing_bits,
    p_value,
    pack,
    random_fingerprints,
    to_hex,
)


@pytest.mark.parametrize("nbits", [32, 48, 64, 72, 128])
def test_hex_roundtrip(nbits):
    bits = np.random.default_rng(nbits).integers(0, 2, nbits, dtype=np.uint8)
    text = to_hex(bits)
    assert len(text) == nbits // 4
    np.testing.assert_array_equal(from_hex(text, nbits), bits)
    np.testing.assert_array_equal(from_hex("0x" + text.upper()), bits)


def test_hex_msb_first():
    bits = from_hex("80000001")
    assert bits[0] == 1 and bits[-1] == 1 and bits[1:-1].sum() == 0


@pytest.mark.parametrize(
    "text,nbits,match",
    [
        ("zz" * 6, 48, "not hexadecimal"),
        ("ab" * 6, 64, "this model uses 64 bits"),
        ("abc", None, "not hexadecimal"),
        ("ab" * 3, None, "multiple of 8 between"),
    ],
)
def test_hex_errors(text, nbits, match):
    with pytest.raises(GenprintError, match=match):
        from_hex(text, nbits)


@pytest.mark.parametrize("nbits", [32, 64, 96, 128])
def test_pack_hamming_vs_naive(nbits):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, (20, nbits), dtype=np.uint8)
    b = rng.integers(0, 2, (30, nbits), dtype=np.uint8)
    words = pack(a)
    assert words.dtype == np.uint64 and words.shape == (20, -(-nbits // 64))
    got = hamming(words[:, None, :], pack(b)[None, :, :])
    naive = (a[:, None, :] != b[None, :, :]).sum(-1)
    np.testing.assert_array_equal(got, naive)
    # MSB first: the first bit is the top bit of the first word
    one = np.zeros(nbits, np.uint8)
    one[0] = 1
    assert pack(one)[0, 0] == np.uint64(1) << np.uint64(63)


@pytest.mark.parametrize("n", [32, 48, 64, 128])
def test_p_values_vs_scipy(n):
    k = np.arange(0, n + 2)
    expected = binom.sf(k - 1, n, 0.5)
    np.testing.assert_allclose(p_value(k, n), expected, rtol=1e-9, atol=1e-300)
    for users in (1, 1000, 10**7):
        with np.errstate(divide="ignore"):
            ref = -np.expm1(users * np.log1p(-expected))  # 1 - (1 - p)^users without cancellation
        np.testing.assert_allclose(corrected_p_value(k, n, users), ref, rtol=1e-9, atol=1e-300)
        tail = (expected > 0) & (expected < 1e-12)
        np.testing.assert_allclose(corrected_p_value(k, n, users)[tail], users * expected[tail], rtol=1e-4)


def test_decision_threshold_is_tight():
    for n, users, fpr in [(48, 1000, 1e-6), (64, 10**7, 1e-6), (128, 10**6, 1e-9)]:
        k = min_agreeing_bits(n, users, fpr)
        assert corrected_p_value(k, n, users) <= fpr < corrected_p_value(k - 1, n, users)
        d = Decision(n, users, fpr)
        assert d.max_distance == n - k
        assert d.attributed(n - k) and not d.attributed(n - k + 1)


@pytest.mark.parametrize("nbits,min_distance", [(32, 6), (48, 10), (64, 16)])
def test_random_fingerprints_min_distance(nbits, min_distance):
    rng = np.random.default_rng(7)
    existing = random_fingerprints(50, nbits, min_distance, rng=rng)
    new = random_fingerprints(200, nbits, min_distance, existing=existing, rng=rng)
    assert new.shape == (200, nbits) and set(np.unique(new)) <= {0, 1}
    allw = pack(np.concatenate([existing, new]))
    d = hamming(allw[:, None, :], allw[None, :, :])
    np.fill_diagonal(d, nbits)
    assert d.min() >= min_distance


def test_random_fingerprints_impossible():
    with pytest.raises(GenprintError, match="could only draw"):
        random_fingerprints(100, 32, 30, rng=np.random.default_rng(0), max_tries=3)
