"""Text utilities. ``ngram_counts`` runs compiled (Cython) when the extension was built, else in Python."""
from __future__ import annotations

from collections import Counter

__all__ = ["ngram_counts"]

try:
    from ._ngrams import ngram_counts as _ngram_counts_c
except ImportError:  # built without Cython: same results, slower
    _ngram_counts_c = None


def _ngram_counts_py(tokens, max_order):
    seq = tuple(tokens)
    c = Counter()
    for order in range(1, max_order + 1):
        for i in range(len(seq) - order + 1):
            c[seq[i:i + order]] += 1
    return dict(c)


def ngram_counts(tokens, max_order: int = 4) -> Counter:
    """Count the n-grams of orders 1..max_order of a token sequence.

    >>> ngram_counts("the cat the".split(), 2)[("the",)]
    2

    Returns a ``collections.Counter`` keyed by n-gram tuples. Tokens are any hashable objects.
    """
    max_order = int(max_order)
    if max_order < 1:
        raise ValueError(f"ngram_counts: expected max_order >= 1, got {max_order}")
    fn = _ngram_counts_c if _ngram_counts_c is not None else _ngram_counts_py
    return Counter(fn(tokens, max_order))
