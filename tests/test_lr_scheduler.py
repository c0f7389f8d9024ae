"""LR schedules: closed forms, the notes' table, and bitwise equality with torch's schedulers."""
import math

import pytest

from fastml.optim import lr_scheduler as S


class _Opt:
    """The minimal optimizer interface the schedulers use: param_groups with 'lr'."""

    def __init__(self, *lrs):
        self.param_groups = [{"lr": lr} for lr in lrs]


def _run(sched, opt, epochs):
    out = []
    for _ in range(epochs):
        out.append([g["lr"] for g in opt.param_groups])
        sched.step()
    return out


def test_inverse_time_matches_the_notes_table():
    # notes: alpha0 = 0.2, decay_rate = 1 -> after epochs 1..4: 0.1, 0.067, 0.05, 0.04
    opt = _Opt(0.2)
    lrs = [v[0] for v in _run(S.InverseTimeLR(opt, decay_rate=1.0), opt, 5)]
    assert lrs[0] == 0.2
    assert lrs[1:] == pytest.approx([0.1, 0.2 / 3, 0.05, 0.04], rel=1e-15)


def test_closed_forms():
    opt = _Opt(1.0, 0.5)
    lrs = _run(S.InverseSqrtLR(opt, k=2.0), opt, 4)
    assert lrs[3] == pytest.approx([2.0 / math.sqrt(4), 1.0 / math.sqrt(4)])
    opt = _Opt(1.0)
    assert [v[0] for v in _run(S.StepLR(opt, step_size=2, gamma=0.5), opt, 6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    opt = _Opt(1.0)
    assert [v[0] for v in _run(S.ExponentialLR(opt, gamma=0.95), opt, 4)] == pytest.approx([1, 0.95, 0.95**2, 0.95**3])
    opt = _Opt(1.0)
    lrs = [v[0] for v in _run(S.CosineAnnealingLR(opt, T_max=4, eta_min=0.1), opt, 5)]
    assert lrs == pytest.approx([0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)])
    opt = _Opt(3.0)
    assert [v[0] for v in _run(S.LambdaLR(opt, lambda e: 1 / (e + 1)), opt, 3)] == pytest.approx([3, 1.5, 1])


def test_get_last_lr_and_state_dict_round_trip():
    opt = _Opt(1.0)
    s = S.StepLR(opt, step_size=3, gamma=0.1)
    for _ in range(4):
        s.step()
    assert s.get_last_lr() == [opt.param_groups[0]["lr"]]
    state = s.state_dict()
    assert "optimizer" not in state
    opt2 = _Opt(1.0)
    s2 = S.StepLR(opt2, step_size=3, gamma=0.1)
    s2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    s.step(), s2.step()
    assert s.get_last_lr() == s2.get_last_lr()


def test_bad_arguments():
    with pytest.raises(TypeError, match="param_groups"):
        S.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="step_size"):
        S.StepLR(_Opt(1.0), step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        S.CosineAnnealingLR(_Opt(1.0), T_max=0)
    with pytest.raises(ValueError, match="decay_rate"):
        S.InverseTimeLR(_Opt(1.0), decay_rate=-1)
    with pytest.raises(ValueError, match="2 lr_lambdas"):
        S.LambdaLR(_Opt(1.0, 2.0), [lambda e: 1.0])
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(_Opt(1.0), step_size=1, last_epoch=3)


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 1e-4}),
    ("LambdaLR", {"lr_lambda": lambda e: 0.97**e}),
])
def test_bitwise_equal_to_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([p], lr=0.1)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    opt = _Opt(0.1)
    sched = getattr(S, name)(opt, **kwargs)
    for _ in range(30):
        assert opt.param_groups[0]["lr"] == topt.param_groups[0]["lr"]
        topt.step()
        tsched.step()
        sched.step()


def test_scheduler_drives_a_fastml_optimizer():
    import numpy as np

    import fastml

    p = [np.ones(4, np.float32)]
    opt = fastml.optim.SGD(p, lr=0.5)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    for expected in (0.5, 0.25, 0.125):
        before = p[0].copy()
        opt.step([np.ones(4, np.float32)])
        np.testing.assert_allclose(before - p[0], expected)  # the step used the scheduled lr
        sched.step()
    assert opt.lr == 0.0625
