"""fastml.text: the Cython n-gram counter against the pure-Python one and hand counts."""
from collections import Counter

import pytest

import fastml.text as T


def test_ngram_counts_hand_example():
    c = T.ngram_counts("the cat sat on the mat".split(), 2)
    assert c[("the",)] == 2 and c[("the", "cat")] == 1 and c[("on", "the")] == 1
    assert sum(v for k, v in c.items() if len(k) == 1) == 6
    assert sum(v for k, v in c.items() if len(k) == 2) == 5


@pytest.mark.parametrize("tokens", [[], [1], [1, 1, 1, 1], list(range(50)) * 3, "a b a b a".split()])
@pytest.mark.parametrize("order", [1, 2, 4, 7])
def test_compiled_matches_python(tokens, order):
    assert T.ngram_counts(tokens, order) == Counter(T._ngram_counts_py(tokens, order))


def test_compiled_extension_built():
    assert T._ngram_counts_c is not None, "the Cython extension fastml.text._ngrams was not built"


def test_bad_order():
    with pytest.raises(ValueError, match="max_order >= 1"):
        T.ngram_counts([1, 2], 0)
