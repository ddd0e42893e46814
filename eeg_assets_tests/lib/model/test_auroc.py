"""The exact AUROC against brute force, and the streaming binned AUROC against the exact one."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from eeg_assets.lib.model.auroc import BinnedAUROC, sample_auroc


def _binned(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    auroc = BinnedAUROC()
    auroc.update(scores, labels)
    return auroc.compute()


def _both(scores, labels) -> list[float]:
    scores, labels = np.asarray(scores, dtype=np.float32), np.asarray(labels, dtype=bool)
    return [sample_auroc(scores, labels), _binned(scores, labels)[0]]


# ---------------------------------------------------------------- exact

def test_auroc_of_known_cases():
    labels = [0, 0, 1, 1]
    assert _both([0.1, 0.2, 0.8, 0.9], labels) == [1.0, 1.0]
    assert _both([0.9, 0.8, 0.2, 0.1], labels) == [0.0, 0.0]
    assert _both([0.3, 0.3, 0.3, 0.3], labels) == [0.5, 0.5]
    # Pairs (pos, neg): (0.35>0.1), (0.35<0.4), (0.8>0.1), (0.8>0.4) -> 3 of 4.
    assert _both([0.1, 0.4, 0.35, 0.8], labels) == [0.75, 0.75]
    # A positive tied with a negative counts one half: pairs 1 + 0.5 + 1 + 1.
    assert _both([0.1, 0.4, 0.4, 0.8], labels) == [0.875, 0.875]


def test_auroc_is_nan_with_one_class():
    for labels in ([1, 1], [0, 0]):
        assert all(math.isnan(a) for a in _both([0.1, 0.9], labels))
        assert math.isnan(_binned(np.array([0.1, 0.9]), np.array(labels))[1])


def _pairwise_auroc(scores, labels):
    positives, negatives = scores[labels], scores[~labels]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_brute_force_pairs_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    # Rounding to one decimal creates many ties, within and across classes.
    scores = np.round(rng.random(300) * 0.6 + 0.3 * labels, 1).astype(np.float32)
    brute = _pairwise_auroc(scores, labels)
    assert sample_auroc(scores, labels) == pytest.approx(brute, abs=1e-12)
    binned, bound = _binned(scores, labels)
    assert binned == pytest.approx(brute, abs=1e-12) and bound == 0.0


# ---------------------------------------------------------------- binned vs exact

N = 1_000_000
RNG = np.random.default_rng(11)
LABELS = RNG.random(N) < 0.06


def _sigmoid(logits: np.ndarray, bf16: bool = False) -> np.ndarray:
    logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    if bf16:     # a CUDA run's logits come out of bf16 autocast: a few thousand distinct values
        logits = logits.bfloat16().float()
    return torch.sigmoid(logits).numpy()


def _logit_normal(pos_mean, neg_mean, sd, bf16=False) -> np.ndarray:
    return _sigmoid(np.where(LABELS, RNG.normal(pos_mean, sd, N), RNG.normal(neg_mean, sd, N)),
                    bf16)


def _stitched_bf16() -> np.ndarray:
    """Mean over 6 overlapping windows' bf16 probabilities, as validation stitches them."""
    logits = np.where(LABELS, RNG.normal(1, 2, N), RNG.normal(-5, 2, N))
    return np.mean([_sigmoid(logits + RNG.normal(0, 0.3, N), bf16=True).astype(np.float64)
                    for _ in range(6)], axis=0).astype(np.float32)


def _saturated() -> np.ndarray:
    """Confident scores: exact 0 and 1, values below 2**-40 and within 2**-24 of 1 in both."""
    scores = _logit_normal(12, -14, 5)
    scores[RNG.random(N) < 0.02] = 0.0
    scores[RNG.random(N) < 0.02] = 1.0
    return scores


REALISTIC = {
    "logit-normal": lambda: _logit_normal(1, -5, 2),
    "logit-normal, bf16 logits": lambda: _logit_normal(1, -5, 2, bf16=True),
    "stitched bf16 windows": _stitched_bf16,
    "overlapping within 0.5 log-odds": lambda: _logit_normal(-3.0, -3.3, 0.5),
    "saturated": _saturated,
    "one constant score": lambda: np.full(N, 0.125, np.float32),
    "clustered on 5 values": lambda: RNG.choice(np.float32([1e-3, 0.01, 0.2, 0.6, 0.99]), N),
}


@pytest.mark.parametrize("name", REALISTIC)
def test_binned_auroc_is_within_its_bound_of_the_exact_one(name):
    scores = REALISTIC[name]()
    exact = sample_auroc(scores, LABELS)
    binned, bound = _binned(scores, LABELS)
    assert abs(binned - exact) <= bound + 1e-12
    assert bound <= 1e-4


def test_bound_is_reported_honestly_when_scores_crowd_into_few_bins():
    """All scores within 1 % of each other: the bound exceeds 1e-4 and still holds."""
    scores = RNG.uniform(0.01, 0.0101, N).astype(np.float32)
    exact = sample_auroc(scores, LABELS)
    binned, bound = _binned(scores, LABELS)
    assert abs(binned - exact) <= bound and bound > 1e-4


def test_a_bin_with_interleaved_classes_is_counted_half_and_bounded():
    base = np.float32(0.3)
    ulps = np.nextafter(base, np.float32(1)) - base
    scores = base + ulps * np.float32([0, 3, 2, 4])      # negatives 0, 3; positives 2, 4 (ulps)
    labels = np.array([False, False, True, True])
    assert sample_auroc(scores, labels) == 0.75
    assert _binned(scores, labels) == (0.5, 0.5)


def test_streaming_in_pieces_equals_one_update():
    scores, labels = _stitched_bf16()[:200_000], LABELS[:200_000]
    pieces = BinnedAUROC()
    for start in range(0, scores.size, 30_001):
        pieces.update(scores[start: start + 30_001], labels[start: start + 30_001])
    assert pieces.compute() == _binned(scores, labels)


def test_order_key_follows_every_float32_probability():
    edges = np.float32([0.0, 1e-45, 2.0 ** -41, 2.0 ** -40, 1e-9, 0.25, 0.5, 0.75, 1.0])
    neighbours = np.concatenate([np.nextafter(edges, np.float32(0)),
                                 np.nextafter(edges, np.float32(1))])
    values = np.unique(np.concatenate([edges, neighbours, RNG.random(10_000, np.float32)]))
    keys = BinnedAUROC.order_key(values).astype(np.int64)
    assert np.all(np.diff(keys) > 0)
    negative_zero, zero = BinnedAUROC.order_key(np.float32([-0.0, 0.0]))
    assert negative_zero == zero


@pytest.mark.parametrize("bad", [np.nan, -0.1, 1.5])
def test_scores_that_are_not_probabilities_are_refused(bad):
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        BinnedAUROC().update(np.float32([0.2, bad]), np.array([True, False]))


def test_scores_and_labels_must_match_in_size():
    with pytest.raises(ValueError, match="differ"):
        BinnedAUROC().update(np.float32([0.2, 0.3]), np.array([True]))
