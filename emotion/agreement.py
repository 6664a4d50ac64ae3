"""The label review's maths, apart from the database: which label a reading's reviews settle
on, which readings take a second review, and how far two reviewers agree (Cohen's kappa).

:mod:`emotion.services` and :mod:`emotion.selectors` do the I/O around it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

#: the second-review pick hashes a reading's id: ``((id % P) * A) % P`` is a permutation of
#: the residues mod the prime P, and its last three digits pick the share; plain integer
#: arithmetic that SQLite and PostgreSQL compute the same, and that never overflows a bigint
SECOND_REVIEW_PRIME = 1_000_003
SECOND_REVIEW_MULTIPLIER = 2_654_435_761  # Knuth's multiplicative hash constant
SECOND_REVIEW_BUCKETS = 1000


def consensus(labels: Sequence[str]) -> str | None:
    """The label training uses, from every review of one reading: the label more than half of
    them gave. One review: its label; two that agree: theirs, two that disagree: None (not
    trained on until a third settles it); three: the majority, None if all three differ."""
    if not labels:
        return None
    label, n = Counter(labels).most_common(1)[0]
    return label if 2 * n > len(labels) else None


def second_review_bucket(reading_id: int) -> int:
    """A reading's bucket in 0..999, fixed by its id alone (not by its face, its label or
    when it was reviewed), so the doubly reviewed subset is an unbiased sample."""
    h = (reading_id % SECOND_REVIEW_PRIME) * SECOND_REVIEW_MULTIPLIER % SECOND_REVIEW_PRIME
    return h % SECOND_REVIEW_BUCKETS


def second_review_cutoff(share: float) -> int:
    """Buckets below this take a second review: ``share`` (0–1) of all readings."""
    return round(min(max(share, 0.0), 1.0) * SECOND_REVIEW_BUCKETS)


def cohen_kappa(pairs: Iterable[tuple[str, str]], classes: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters over ``pairs`` (rater one's label, rater two's label):
    ``(p_o - p_e) / (1 - p_e)``, with ``p_o`` the share of items they agree on and ``p_e`` the
    agreement expected by chance from each rater's own label frequencies over ``classes``.
    None when there is no pair, or when chance agreement is certain (``p_e`` = 1: both raters
    gave one and the same label to everything, and kappa is undefined)."""
    index = {c: i for i, c in enumerate(classes)}
    first, second = [0] * len(classes), [0] * len(classes)
    n = agree = 0
    for a, b in pairs:
        first[index[a]] += 1
        second[index[b]] += 1
        agree += a == b
        n += 1
    if n == 0:
        return None
    p_o = agree / n
    p_e = sum(f * s for f, s in zip(first, second, strict=True)) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def percent_agreement(pairs: Sequence[tuple[str, str]]) -> float | None:
    """The share of pairs whose two labels are the same (0–1), None for no pair."""
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None
