"""Fingerprints: n-bit codes (n = 32..128, multiple of 8), hex MSB first, packed to uint64 words.

The statistics follow WOUAF / Stable Signature: under the null hypothesis (the image was not
made with this fingerprint) every extracted bit agrees with a registered bit with probability
1/2, so the number of agreeing bits k out of n is Binomial(n, 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from genprint.errors import GenprintError

MIN_BITS, MAX_BITS = 32, 128


def check_nbits(nbits: int) -> int:
    if not (MIN_BITS <= nbits <= MAX_BITS and nbits % 8 == 0):
        raise GenprintError(
            f"fingerprint length must be a multiple of 8 between {MIN_BITS} and {MAX_BITS} bits, got {nbits}"
        )
    return nbits


def from_hex(text: str, nbits: int | None = None) -> np.ndarray:
    """Hex (MSB first) -> uint8 array of 0/1 bits. Checks the length when nbits is given."""
    text = text.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise GenprintError(f"fingerprint {text!r} is not hexadecimal") from None
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    check_nbits(len(bits))
    if nbits is not None and len(bits) != nbits:
        raise GenprintError(
            f"fingerprint has {len(bits)} bits ({len(text)} hex digits); "
            f"this model uses {nbits} bits ({nbits // 4} hex digits)"
        )
    return bits


def to_hex(bits) -> str:
    bits = np.asarray(bits).astype(np.uint8).reshape(-1)
    check_nbits(len(bits))
    return np.packbits(bits).tobytes().hex()


def pack(bits: np.ndarray) -> np.ndarray:
    """(N, n) or (n,) 0/1 bits -> (N, ceil(n/64)) uint64 words, MSB first, zero padded."""
    bits = np.atleast_2d(np.asarray(bits, dtype=np.uint8))
    n = bits.shape[1]
    words = -(-n // 64)
    padded = np.zeros((bits.shape[0], words * 64), dtype=np.uint8)
    padded[:, :n] = bits
    as_bytes = np.packbits(padded, axis=1)  # (N, words*8), big-endian within each byte
    return as_bytes.view(">u8").astype(np.uint64)


def hamming(a_words: np.ndarray, b_words: np.ndarray) -> np.ndarray:
    """Hamming distances between packed codes; broadcasts over leading dims, sums the word axis."""
    x = np.bitwise_xor(a_words, b_words)
    return np.bitwise_count(x).sum(axis=-1).astype(np.int64)


def random_fingerprints(
    count: int,
    nbits: int,
    min_distance: int = 0,
    *,
    existing: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    max_tries: int = 100,
) -> np.ndarray:
    """Draw `count` random codes, each at Hamming distance >= min_distance from every other and from `existing`.

    Returns (count, nbits) uint8 bits. Vectorised rejection sampling: a batch of candidates is
    drawn, screened against what is kept so far, and survivors are screened against each other.
    """
    check_nbits(nbits)
    rng = rng or np.random.default_rng()
    kept_bits = np.zeros((0, nbits), dtype=np.uint8)
    kept_words = pack(existing) if existing is not None and len(existing) else np.zeros((0, -(-nbits // 64)), np.uint64)
    n_existing = len(kept_words)
    for _ in range(max_tries):
        need = count - len(kept_bits)
        if need <= 0:
            break
        cand = rng.integers(0, 2, size=(need + need // 4 + 8, nbits), dtype=np.uint8)
        cand_words = pack(cand)
        if min_distance > 0:
            ok = np.ones(len(cand), dtype=bool)
            for start in range(0, len(kept_words), 65536):  # bounded memory against large registries
                d = hamming(cand_words[:, None, :], kept_words[None, start : start + 65536, :])
                ok &= d.min(axis=1) >= min_distance
            cand, cand_words = cand[ok], cand_words[ok]
            chosen = []
            for i in range(len(cand)):  # greedy within the batch; the batch is small
                if chosen:
                    if hamming(cand_words[i][None], cand_words[chosen]).min() < min_distance:
                        continue
                chosen.append(i)
            cand, cand_words = cand[chosen], cand_words[chosen]
        cand, cand_words = cand[:need], cand_words[:need]
        kept_bits = np.concatenate([kept_bits, cand])
        kept_words = np.concatenate([kept_words, cand_words])
    if len(kept_bits) < count:
        raise GenprintError(
            f"could only draw {len(kept_bits)} of {count} fingerprints of {nbits} bits "
            f"at minimum distance {min_distance} "
            f"(with {n_existing} already issued); lower the minimum distance or use more bits"
        )
    return kept_bits


def log_binom_sf(k, n: int) -> np.ndarray:
    """log P(X >= k) for X ~ Binomial(n, 1/2), accurate far into the tail."""
    k = np.asarray(k, dtype=np.float64)
    # P(X >= k) = I_{1/2}(k, n - k + 1) for 1 <= k <= n; 1 for k <= 0; 0 for k > n.
    with np.errstate(divide="ignore"):
        p = np.where(k <= 0, 1.0, betainc(np.clip(k, 1, n), np.clip(n - k + 1, 1e-12, None), 0.5))
        p = np.where(k > n, 0.0, p)
        return np.log(p)


def p_value(agreeing, n: int) -> np.ndarray:
    """P(X >= k), X ~ Binomial(n, 1/2): the chance that a random code agrees on >= k of n bits."""
    return np.exp(log_binom_sf(agreeing, n))


def corrected_p_value(agreeing, n: int, users: int) -> np.ndarray:
    """Chance that the best of `users` unrelated codes agrees on >= k bits: 1 - (1 - p)^users."""
    p = p_value(agreeing, n)
    with np.errstate(divide="ignore"):  # p == 1 gives log1p(-1) = -inf, and correctly 1 in the end
        return -np.expm1(users * np.log1p(-p))


def min_agreeing_bits(n: int, users: int, fpr: float) -> int:
    """Smallest k such that attributing at >= k agreeing bits has false-positive rate <= fpr per query."""
    for k in range(n + 1):
        if corrected_p_value(k, n, max(users, 1)) <= fpr:
            return k
    return n + 1


@dataclass(frozen=True)
class Decision:
    """The binomial attribution rule at one operating point."""

    nbits: int
    users: int
    fpr: float

    @property
    def max_distance(self) -> int:
        """Largest Hamming distance still attributed (-1: nothing can be attributed)."""
        return self.nbits - min_agreeing_bits(self.nbits, self.users, self.fpr)

    def attributed(self, distance) -> np.ndarray:
        return np.asarray(distance) <= self.max_distance


def log10_p(agreeing, n: int) -> float:
    return float(log_binom_sf(agreeing, n) / math.log(10))
