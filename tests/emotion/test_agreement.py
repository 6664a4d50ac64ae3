"""The label review's pure maths: Cohen's kappa against textbook examples, the label a
reading's reviews settle on, and the second-review pick (content-blind, the share asked)."""

import pytest

from emotion.agreement import (
    cohen_kappa,
    consensus,
    percent_agreement,
    second_review_bucket,
    second_review_cutoff,
)
from ml.classes import EMOTIONS


def table(yes_yes: int, yes_no: int, no_yes: int, no_no: int) -> list[tuple[str, str]]:
    """A 2×2 agreement table as pairs (rater one, rater two), "yes" = happy, "no" = sad."""
    return (
        [("happy", "happy")] * yes_yes
        + [("happy", "sad")] * yes_no
        + [("sad", "happy")] * no_yes
        + [("sad", "sad")] * no_no
    )


@pytest.mark.parametrize(
    "cells,p_o,kappa",
    [
        # Wikipedia, "Cohen's kappa", simple example: 50 proposals, p_o 0.7, p_e 0.5
        ((20, 5, 10, 15), 0.7, 0.4),
        # ibid., same p_o, different marginals: p_e 0.54 and 0.46
        ((45, 15, 25, 15), 0.6, 0.1304),
        ((25, 35, 5, 35), 0.6, 0.2593),
    ],
)
def test_kappa_matches_the_textbook_examples(cells, p_o, kappa):
    pairs = table(*cells)
    # the five classes nobody used change nothing: the same figure over all seven
    assert cohen_kappa(pairs, EMOTIONS) == pytest.approx(kappa, abs=5e-5)
    assert cohen_kappa(pairs, ["happy", "sad"]) == pytest.approx(kappa, abs=5e-5)
    assert percent_agreement(pairs) == pytest.approx(p_o)


def test_kappa_over_seven_classes_by_hand():
    # p_o = 5/6; rater one: angry 2, happy 2, sad 2; rater two: angry 1, happy 3, sad 2;
    # p_e = (2·1 + 2·3 + 2·2) / 36 = 1/3; kappa = (5/6 − 1/3) / (1 − 1/3) = 0.75
    pairs = [("angry", "angry"), ("angry", "happy"), ("happy", "happy")]
    pairs += [("happy", "happy"), ("sad", "sad"), ("sad", "sad")]
    assert cohen_kappa(pairs, EMOTIONS) == pytest.approx(0.75)
    assert cohen_kappa([(b, a) for a, b in pairs], EMOTIONS) == pytest.approx(0.75)


def test_perfect_chance_and_worse_than_chance():
    assert cohen_kappa([("happy", "happy"), ("sad", "sad")], EMOTIONS) == 1.0
    assert cohen_kappa([("happy", "sad"), ("sad", "happy")], EMOTIONS) == -1.0
    assert cohen_kappa([], EMOTIONS) is None and percent_agreement([]) is None
    # both raters said "neutral" every time: chance agreement is certain, kappa undefined
    assert cohen_kappa([("neutral", "neutral")] * 5, EMOTIONS) is None


def test_the_reviews_settle_on_a_strict_majority():
    assert consensus([]) is None
    assert consensus(["happy"]) == "happy"
    assert consensus(["happy", "happy"]) == "happy"
    assert consensus(["happy", "sad"]) is None  # not trained on until a third review
    assert consensus(["happy", "sad", "sad"]) == "sad"
    assert consensus(["happy", "sad", "fear"]) is None
    assert consensus(["sad", "happy", "happy", "sad"]) is None


def test_the_second_review_pick_takes_the_share_asked_of_any_run_of_ids():
    assert second_review_cutoff(0.2) == 200
    assert second_review_cutoff(0) == 0 and second_review_cutoff(1.0) == 1000
    assert second_review_cutoff(-1) == 0 and second_review_cutoff(7) == 1000
    for start in (1, 123_456, 10**12, 2**62):
        ids = range(start, start + 20_000)
        picked = sum(second_review_bucket(i) < 200 for i in ids) / len(ids)
        assert picked == pytest.approx(0.2, abs=0.01), start
    # neighbours are not picked together: a session's consecutive frames are spread
    runs = [second_review_bucket(i) < 200 for i in range(1, 10_001)]
    both = sum(a and b for a, b in zip(runs, runs[1:], strict=False)) / (len(runs) - 1)
    assert both < 0.2 * 0.2 + 0.02
    assert all(0 <= second_review_bucket(i) < 1000 for i in (0, 1, 2**63 - 1))
