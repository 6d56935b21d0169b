"""Soft matching: scores against brute force, the exact null, and the registry's soft and collection decisions."""

import itertools

import numpy as np
import pytest

from genprint import evidence
from genprint.fingerprint import from_hex, p_value, pack
from genprint.registry import Registry

MODEL = "model-soft"


@pytest.mark.parametrize("nbits", [32, 48, 128])
def test_scores_match_a_brute_force_sum_over_bits(nbits):
    rng = np.random.default_rng(nbits)
    codes = rng.integers(0, 2, (300, nbits)).astype(np.uint8)
    logits = rng.normal(0, 2, nbits)
    brute = ((2 * codes.astype(np.float64) - 1) * logits).sum(1)
    np.testing.assert_allclose(evidence.scores(pack(codes), logits), brute, atol=1e-4)


def test_the_null_is_the_share_of_all_codes_that_score_as_well():
    """Exhaustively over every 16-bit code: the p-value bounds the exact share from above, within 10 % down to 1e-3
    and 25 % at 1e-4 (where 7 of the 65,536 codes score as well)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 16)
    every = np.array(list(itertools.product([0, 1], repeat=16)), np.float64)
    all_scores = ((2 * every - 1) * logits).sum(1)
    for quantile, slack in ((0.5, 1.1), (0.9, 1.1), (0.99, 1.1), (0.999, 1.1), (0.9999, 1.25)):
        score = np.quantile(all_scores, quantile)
        exact = (all_scores >= score - 1e-12).mean()
        assert exact <= evidence.p_value(logits, score) <= exact * slack, quantile
    # with equal confidence in every bit it is the binomial test of the Hamming rule, exactly
    assert evidence.p_value(np.ones(48), 2 * 45 - 48) == pytest.approx(p_value(45, 48), rel=1e-9)


@pytest.fixture
def registry(tmp_path):
    with Registry(f"sqlite:///{tmp_path / 'r.db'}") as reg:
        tenant, _ = reg.create_tenant("acme")
        codes = dict(reg.register_users(tenant, MODEL, 48, names=[f"u{i}" for i in range(200)]))
        yield reg, {user: from_hex(code) for user, code in codes.items()}


def noisy_read(code: np.ndarray, wrong: int, confident: float, unsure: float, rng) -> np.ndarray:
    """Logits for `code` with `wrong` bits flipped, the flipped ones read with little confidence."""
    logits = (2 * code.astype(np.float64) - 1) * confident
    flipped = rng.choice(len(code), wrong, replace=False)
    logits[flipped] = -np.sign(logits[flipped]) * unsure
    return logits


def test_soft_matching_attributes_reads_the_hamming_rule_cannot(registry):
    reg, codes = registry
    rng = np.random.default_rng(1)
    read = noisy_read(codes["u7"], wrong=7, confident=4.0, unsure=0.2, rng=rng)
    hard = reg.attribute_many((read > 0).astype(np.uint8)[None], MODEL)[0]
    soft = reg.attribute_many(None, MODEL, logits=read[None])[0]
    assert not hard.attributed and hard.user == "u7" and hard.distance == 7  # past the binomial threshold (3 of 48)
    assert soft.attributed and soft.user == "u7" and soft.rule == "soft" and soft.p_value < 1e-6
    assert soft.score > soft.runner_up_score
    nothing = reg.attribute_many(None, MODEL, logits=rng.normal(0, 3, (20, 48)))
    assert not any(a.attributed for a in nothing) and min(a.p_value for a in nothing) > 1e-3


def test_a_collection_adds_evidence_but_never_names_one_of_two_sources(registry):
    reg, codes = registry
    rng = np.random.default_rng(2)
    weak = [noisy_read(codes["u3"], wrong=14, confident=1.0, unsure=1.0, rng=rng) for _ in range(8)]
    assert not any(a.attributed for a in reg.attribute_many(None, MODEL, logits=np.stack(weak)))
    joint = reg.attribute_collection(np.stack(weak), MODEL, labels=[f"{i}.png" for i in range(8)])
    assert joint.attributed and joint.user == "u3" and joint.images == 8
    mixed = [noisy_read(codes[u], wrong=0, confident=3.0, unsure=0.0, rng=rng) for u in ("u3", "u3", "u9")]
    answer = reg.attribute_collection(np.stack(mixed), MODEL)
    assert not answer.attributed
    (event,) = reg.audit_log(action="attribute.collection", limit=1)
    assert event["detail"]["mixed_sources"] and not event["detail"]["attributed"]
    assert len(reg.audit_log(action="attribute.collection")) == 2  # one query per collection
