"""Fingerprint codes at registry scale: hex <-> packed words, and issuance with a minimum distance.

genprint.fingerprint.random_fingerprints screens candidates pairwise, which is quadratic; issuing
millions of codes needs the pigeonhole trick of multi-index hashing instead: split the n bits into
D blocks; two codes closer than D differ in at most D-1 bits, so at least one block is identical.
Only codes sharing a block are compared. That is fast while each block has more bits than
log2(number of codes) (e.g. 64-bit codes, D=4: 16-bit blocks, fine for 10 million codes).
"""

from __future__ import annotations

import numpy as np

from genprint.errors import GenprintError
from genprint.fingerprint import check_nbits, hamming, pack


def default_min_distance(nbits: int) -> int:
    """Codes differ in at least n/16 bits (2 for 32-bit, 4 for 64-bit, 8 for 128-bit codes)."""
    return max(2, nbits // 16)


def n_words(nbits: int) -> int:
    return -(-nbits // 64)


def hex_to_words(codes: list[str], nbits: int) -> np.ndarray:
    """Lower-case hex codes of nbits bits (as stored) -> (N, words) uint64, same layout as fingerprint.pack."""
    nbytes, width = nbits // 8, n_words(nbits) * 8
    raw = np.frombuffer(bytes.fromhex("".join(codes)), dtype=np.uint8).reshape(len(codes), nbytes)
    if nbytes != width:
        raw = np.concatenate([raw, np.zeros((len(codes), width - nbytes), np.uint8)], axis=1)
    return np.ascontiguousarray(raw).view(">u8").astype(np.uint64)


def words_to_hex(words: np.ndarray, nbits: int) -> list[str]:
    raw = (
        np.ascontiguousarray(words.astype(">u8"))
        .view(np.uint8)
        .reshape(len(words), words.shape[1] * 8)[:, : nbits // 8]
    )
    flat = raw.tobytes().hex()
    step = nbits // 4
    return [flat[i : i + step] for i in range(0, len(flat), step)]


def block_keys(words: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Bits [start, stop) (MSB-first numbering, as packed) of each code as a uint64 key."""
    key = np.zeros(len(words), np.uint64)
    p = start
    while p < stop:
        w, off = divmod(p, 64)
        take = min(stop - p, 64 - off)
        seg = (words[:, w] >> np.uint64(64 - off - take)) & np.uint64((1 << take) - 1)
        key = seg if take == 64 else (key << np.uint64(take)) | seg
        p += take
    return key


def too_close(words: np.ndarray, first_candidate: int, nbits: int, min_distance: int) -> np.ndarray:
    """Rows [first_candidate:] that must be dropped so that no two kept rows are closer than min_distance.

    Rows before first_candidate are already issued and always kept. Returns a bool mask over the candidates.
    """
    n_cand = len(words) - first_candidate
    reject = np.zeros(n_cand, bool)
    if min_distance <= 0 or n_cand == 0:
        return reject
    blocks = min(max(min_distance, 1), nbits)
    edges = np.linspace(0, nbits, blocks + 1).round().astype(int)
    for start, stop in zip(edges[:-1], edges[1:]):
        keys = block_keys(words, int(start), int(stop))
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        shift = 1
        while shift < len(order):
            same = sorted_keys[shift:] == sorted_keys[:-shift]
            if not same.any():
                break  # no group of equal keys has more than `shift` members
            a, b = order[:-shift][same], order[shift:][same]
            i, j = np.minimum(a, b), np.maximum(a, b)
            involved = j >= first_candidate  # pairs of issued codes are not ours to judge
            i, j = i[involved], j[involved]
            close = hamming(words[i], words[j]) < min_distance
            reject[j[close] - first_candidate] = True  # of a close pair, the later row goes
            shift += 1
    return reject


def issue_codes(
    count: int,
    nbits: int,
    min_distance: int,
    existing: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    max_rounds: int = 20,
) -> np.ndarray:
    """`count` new random codes as (count, words) uint64, each >= min_distance from one another and from `existing`."""
    check_nbits(nbits)
    rng = rng or np.random.default_rng()
    existing = existing if existing is not None else np.zeros((0, n_words(nbits)), np.uint64)
    kept = np.zeros((0, n_words(nbits)), np.uint64)
    for _ in range(max_rounds):
        need = count - len(kept)
        if need <= 0:
            break
        cand = pack(rng.integers(0, 2, size=(need + need // 8 + 16, nbits), dtype=np.uint8))
        base = np.concatenate([existing, kept])
        ok = ~too_close(np.concatenate([base, cand]), len(base), nbits, min_distance)
        kept = np.concatenate([kept, cand[ok][:need]])
    if len(kept) < count:
        raise GenprintError(
            f"could only issue {len(kept)} of {count} fingerprints of {nbits} bits at minimum distance {min_distance} "
            f"beside {len(existing)} already issued: lower the model's minimum distance or use more bits"
        )
    return kept
