"""Soft matching: score every registered code by how well a read's per-bit logits support it, with an exact null.

A reader gives logits l_i (positive: bit i is 1). A code c scores S(c) = sum_i (2 c_i - 1) l_i, its log-likelihood
ratio against the code's complement up to a constant: bits the reader is sure of count for more than bits it guessed.
Under the null hypothesis (the image carries no code of this registry) the registered codes are random with respect
to the read, so S of a code is sum_i e_i |l_i| with fair signs e_i. Its tail is the chance that a random code scores at
least S: `p_value` computes it by convolving the weights, rounded up (so the p-value can only come out larger than
the exact one), and `corrected` takes the best of N codes. With equal weights it is the binomial test of the Hamming
rule exactly; the reader's own errors, dependent or not, do not enter, because the randomness is in the codes.

Several reads believed to come from one source (a collection) add their logits: the evidence of independent reads
combines, and the same null holds for the sum.
"""

from __future__ import annotations

import numpy as np

# Weights are rounded up to 1/RESOLUTION of their sum: p-values stay upper bounds, close to exact (tests).

RESOLUTION = 16384


def lookup_tables(logits: np.ndarray) -> np.ndarray:
    """(nbits,) logits -> (nbits // 16, 65536) float32 tables: table[k][v] = sum of the logits of the 1-bits of the
    16-bit value v at bit positions 16k..16k+15 (most significant first, as genprint.fingerprint.pack packs)."""
    logits = np.asarray(logits, dtype=np.float64)
    chunks = -(-len(logits) // 16)
    padded = np.zeros(chunks * 16)
    padded[: len(logits)] = logits
    values = np.arange(65536, dtype=np.uint32)
    bits = ((values[:, None] >> np.arange(15, -1, -1, dtype=np.uint32)) & 1).astype(np.float64)  # (65536, 16)
    return np.stack([bits @ padded[16 * k : 16 * (k + 1)] for k in range(chunks)]).astype(np.float32)


def scores(words: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """S(c) for every packed code (N, words uint64) against one read's logits (nbits,): sum_i (2 c_i - 1) l_i."""
    tables = lookup_tables(logits)
    halves = np.ascontiguousarray(words).astype(">u8").view(">u2")  # (N, 4 * words) 16-bit chunks, MSB first
    total = np.zeros(len(words), np.float32)
    for k in range(len(tables)):
        total += tables[k][halves[:, k]]
    return 2 * total - np.float32(np.sum(logits))


def p_value(logits: np.ndarray, score: float) -> float:
    """P(sum_i e_i |l_i| >= score) for fair random signs e_i: the chance that a random code scores this well."""
    weights = np.abs(np.asarray(logits, dtype=np.float64))
    total = weights.sum()
    if total == 0:
        return 1.0
    # A random code scores S = 2 W - total, W the weight of the bits it agrees on: S >= score <=> W >= (score+total)/2
    step = total / RESOLUTION
    units = np.ceil(weights / step).astype(np.int64)  # rounded up: more subsets pass, the p-value can only grow
    need = int(np.ceil((score + total) / 2 / step - 1e-9))
    if need <= 0:
        return 1.0
    dist = np.zeros(int(units.sum()) + 1)
    dist[0] = 1.0
    for u in units:  # the distribution of the agreeing weight: each bit agrees or not, with chance 1/2
        if u:
            dist[u:] = 0.5 * (dist[u:] + dist[:-u])
            dist[:u] *= 0.5
    return float(min(1.0, dist[need:].sum()))


def corrected(p: float | np.ndarray, codes: int) -> np.ndarray:
    """The chance that the best of `codes` unrelated codes scores this well: 1 - (1 - p)^codes."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -np.expm1(max(codes, 1) * np.log1p(-np.minimum(p, 1.0)))
