# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled n-gram counting over token sequences (the inner loop of BLEU and vocabulary building).

Tokens are any hashable Python objects (strings or ints); the work is dict/tuple heavy, which is why
this is Cython rather than SIMD C++.
"""


def ngram_counts(tokens, int max_order):
    """Return {ngram tuple: count} for every n-gram of order 1..max_order in ``tokens``."""
    cdef Py_ssize_t n = len(tokens), i, k
    cdef int order
    cdef dict counts = {}
    cdef tuple seq = tuple(tokens)
    cdef tuple gram
    for order in range(1, max_order + 1):
        k = n - order + 1
        for i in range(k):
            gram = seq[i:i + order]
            counts[gram] = counts.get(gram, 0) + 1
    return counts
