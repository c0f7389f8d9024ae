"""Optimizer classes (fastml.optim.SGD/RMSprop/Adam/AdamW): 100-step parity with the torch classes,
state_dict round trips (bit-exact resume), param_groups/lr changes as a scheduler makes them, zero_state."""
import pickle

import numpy as np
import pytest

import fastml
from fastml import optim
from _optim_cases import EPS32

CLASS_CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, betas=(0.8, 0.99))),
]
IDS = [f"{c}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw in CLASS_CASES]
SHAPES = [(5,), (8, 3), (300,)]


def _grads(rng, params, maximize):
    sign = -1.0 if maximize else 1.0
    return [(sign * 0.5 * p + rng.standard_normal(p.shape)).astype(p.dtype) for p in params]


@pytest.mark.parametrize("name,kw", CLASS_CASES, ids=IDS)
def test_class_matches_torch_100_steps(backend, name, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    tps = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    opt = getattr(optim, name)(params, **kw)
    topt = getattr(torch.optim, name)(tps, foreach=False, **kw)
    tv = [np.abs(p).astype(np.float64) for p in params]
    for t in range(100):
        if t == 50:  # what an LR scheduler does: change group['lr'] in place
            opt.param_groups[0]["lr"] *= 0.5
            topt.param_groups[0]["lr"] *= 0.5
        gs = _grads(rng, params, kw.get("maximize", False))
        prev = [tp.detach().numpy().copy() for tp in tps]
        for tp, g in zip(tps, gs):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(gs)
        for i, tp in enumerate(tps):
            tv[i] += np.abs(tp.detach().numpy() - prev[i])
    assert opt.steps == 100
    for i, tp in enumerate(tps):
        want = tp.detach().numpy()
        if name == "SGD" and backend != "numpy":
            assert np.array_equal(params[i], want)
        else:
            bound = (16 if backend == "numpy" else 4) * EPS32 * tv[i]
            assert np.all(np.abs(params[i] - want) <= bound), f"param {i}: max err {np.abs(params[i] - want).max()}"


@pytest.mark.parametrize("name,kw", CLASS_CASES, ids=IDS)
def test_state_dict_round_trip_exact(name, kw):
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [_grads(rng, params, False) for _ in range(15)]
    opt = getattr(optim, name)(params, **kw)
    for g in grads[:10]:
        opt.step(g)
    sd = opt.state_dict()
    sd = pickle.loads(pickle.dumps(sd))  # a saved-and-loaded checkpoint
    saved = [p.copy() for p in params]
    for g in grads[10:]:
        opt.step(g)
    # resume from the checkpoint in a fresh optimizer over fresh arrays
    params2 = [p.copy() for p in saved]
    opt2 = getattr(optim, name)(params2, **kw)
    opt2.load_state_dict(sd)
    assert opt2.steps == 10
    for g in grads[10:]:
        opt2.step(g)
    for a, b in zip(params, params2):
        assert np.array_equal(a, b)
    sd1, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd1["param_groups"] == sd2["param_groups"]
    for i in sd1["state"]:
        assert sd1["state"][i].keys() == sd2["state"][i].keys()
        for k, v in sd1["state"][i].items():
            assert np.array_equal(v, sd2["state"][i][k])


def test_state_dict_layout_like_torch():
    p = [np.zeros(3, np.float32), np.zeros((2, 2), np.float32)]
    opt = optim.Adam(p, lr=0.1, amsgrad=True)
    opt.step([np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1] and sd["param_groups"][0]["lr"] == 0.1
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"} and sd["state"][1]["step"] == 1
    sd["state"][0]["exp_avg"][:] = 7  # a copy: the optimizer's buffers are unaffected
    assert not np.any(opt.state_buffers["exp_avg"][0] == 7)
    sgd = optim.SGD(p, lr=0.1, momentum=0.9)
    assert "momentum_buffer" not in sgd.state_dict()["state"][0]  # torch: no buffer before the first step
    sgd.step([np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    np.testing.assert_array_equal(sgd.state_dict()["state"][0]["momentum_buffer"], np.ones(3))


def test_load_state_dict_rejects_mismatch_and_changes_nothing():
    p = [np.zeros(3, np.float32)]
    opt = optim.Adam(p, lr=0.1)
    opt.step([np.ones(3, np.float32)])
    sd = opt.state_dict()
    other = optim.Adam([np.zeros(4, np.float32)], lr=0.2)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(sd)
    assert other.lr == 0.2 and other.steps == 0 and not other.state_buffers["exp_avg"][0].any()
    with pytest.raises(ValueError, match="one group of 2"):
        optim.Adam([np.zeros(3, np.float32)] * 2).load_state_dict(sd)
    with pytest.raises(ValueError, match="hyperparameters"):
        optim.SGD(p, lr=0.1).load_state_dict(sd)


def test_zero_state_and_buffers_allocated_once(rng):
    p = [rng.standard_normal(10).astype(np.float32)]
    opt = optim.Adam(p, lr=0.1)
    bufs = [id(b) for b in opt.state_buffers["exp_avg"] + opt.state_buffers["exp_avg_sq"]]
    for _ in range(3):
        opt.step([np.ones(10, np.float32)])
    assert [id(b) for b in opt.state_buffers["exp_avg"] + opt.state_buffers["exp_avg_sq"]] == bufs
    assert all(b.flags.c_contiguous for b in opt.state_buffers["exp_avg"])
    opt.zero_state()
    assert opt.steps == 0 and not opt.state_buffers["exp_avg"][0].any()
    # after zero_state the next step is a first step again (same result as a fresh optimizer)
    q = [p[0].copy()]
    opt.step([np.ones(10, np.float32)])
    optim.Adam(q, lr=0.1).step([np.ones(10, np.float32)])
    assert np.array_equal(p[0], q[0])


def test_lr_attribute_and_param_groups():
    p = [np.ones(2, np.float32)]
    opt = optim.SGD(p, lr=0.5)
    assert opt.param_groups[0]["params"][0] is p[0] and opt.defaults["lr"] == 0.5
    opt.lr = 0.25
    assert opt.param_groups[0]["lr"] == 0.25
    opt.step([np.ones(2, np.float32)])
    np.testing.assert_array_equal(p[0], [0.75, 0.75])


def test_float64_params_run_in_float64(rng):
    p = [rng.standard_normal(7)]
    opt = optim.AdamW(p, lr=0.1)
    opt.step([np.ones(7)])
    assert p[0].dtype == np.float64 and opt.state_buffers["exp_avg"][0].dtype == np.float64


def test_bad_constructor_and_step_arguments():
    p = [np.zeros(3, np.float32)]
    with pytest.raises(ValueError):
        optim.Adam(p, lr=-1)
    with pytest.raises(ValueError):
        optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="pair"):
        optim.AdamW(p, betas=(0.9,))  # was an IndexError
    with pytest.raises(ValueError):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(TypeError):
        optim.SGD(np.zeros(3, np.float32), lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD([np.zeros(3, np.float32), np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
    opt = optim.Adam(p)
    with pytest.raises(ValueError, match="grads"):
        opt.step([np.ones(3, np.float32), np.ones(3, np.float32)])
    assert opt.steps == 0 and not p[0].any()


def test_exported_from_package():
    assert fastml.optim.functional.adam_step is optim.functional.adam_step
    assert "optim" in fastml.__all__
