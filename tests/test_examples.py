"""The end-to-end example trains (needs scikit-learn for its data set; skipped without it)."""
import importlib.util
import os

import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "train_digits_mlp.py")


def _load_example():
    spec = importlib.util.spec_from_file_location("train_digits_mlp", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_digits_mlp_learns_and_matches_torch():
    pytest.importorskip("sklearn", reason="the example's data set comes from scikit-learn")
    ex = _load_example()
    data = ex.load(0)
    _, loss, acc = ex.train_fastml(*data, hidden=128, epochs=5, batch=32, seed=0)
    assert acc > 0.9 and loss < 0.5, (acc, loss)
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    _, loss_t, acc_t = ex.train_torch(*data, hidden=128, epochs=5, batch=32, seed=0)
    # same initialisation, same batches, same maths: the two trajectories agree closely
    assert abs(loss - loss_t) < 1e-3 and abs(acc - acc_t) <= 1 / len(data[3]) + 1e-12
