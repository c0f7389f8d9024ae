"""Train a 2-layer MLP on scikit-learn's digits (8x8 images, 10 classes) with fastml's explicit
forward/backward ops and its Adam, and (when installed) the same model in torch for comparison.

    pip install scikit-learn            # the data set ships inside the package (no download)
    python examples/train_digits_mlp.py [--epochs 40] [--hidden 256] [--batch 64]

Model: logits = relu(x W1^T + b1) W2^T + b2, loss = cross_entropy(logits, y) (mean), Adam(lr=1e-3).
Every gradient is written out by hand with the `<op>_backward` functions: there is no autograd.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastml
import fastml.functional as F


def load(seed):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    te, tr = idx[:n_test], idx[n_test:]
    return x[tr], y[tr], x[te], y[te]


def init(rng, fan_out, fan_in):
    bound = 1.0 / np.sqrt(fan_in)  # torch.nn.Linear's default uniform(-1/sqrt(in), 1/sqrt(in))
    w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return w, b


def train_fastml(xtr, ytr, xte, yte, hidden, epochs, batch, seed):
    rng = np.random.default_rng(seed)
    w1, b1 = init(rng, hidden, xtr.shape[1])
    w2, b2 = init(rng, 10, hidden)
    params = [w1, b1, w2, b2]
    opt = fastml.optim.Adam(params, lr=1e-3)
    one = np.ones((), np.float32)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(len(xtr))
        for s in range(0, len(xtr), batch):
            i = order[s:s + batch]
            x, y = xtr[i], ytr[i]
            h_pre = F.linear(x, w1, b1)
            h = F.relu(h_pre)
            logits = F.linear(h, w2, b2)
            g_logits = F.cross_entropy_backward(one, logits, y)
            g_h, g_w2, g_b2 = F.linear_backward(g_logits, h, w2)
            g_hpre = F.relu_backward(g_h, h_pre)
            _, g_w1, g_b1 = F.linear_backward(g_hpre, x, w1, output_mask=(False, True, True))
            opt.step([g_w1, g_b1, g_w2, g_b2])
    seconds = time.perf_counter() - t0
    logits = F.linear(F.relu(F.linear(xte, w1, b1)), w2, b2)
    loss = float(F.cross_entropy(logits, yte))
    acc = float((logits.argmax(1) == yte).mean())
    return seconds, loss, acc


def train_torch(xtr, ytr, xte, yte, hidden, epochs, batch, seed):
    import torch

    rng = np.random.default_rng(seed)
    w1, b1 = init(rng, hidden, xtr.shape[1])
    w2, b2 = init(rng, 10, hidden)
    ps = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in (w1, b1, w2, b2)]
    opt = torch.optim.Adam(ps, lr=1e-3)
    xtr_t, ytr_t = torch.from_numpy(xtr), torch.from_numpy(ytr)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(len(xtr))
        for s in range(0, len(xtr), batch):
            i = torch.from_numpy(order[s:s + batch])
            x, y = xtr_t[i], ytr_t[i]
            logits = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, ps[0], ps[1])), ps[2], ps[3])
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        logits = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(torch.from_numpy(xte), ps[0], ps[1])),
                                            ps[2], ps[3])
        loss = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(yte)))
        acc = float((logits.argmax(1).numpy() == yte).mean())
    return seconds, loss, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data = load(a.seed)
    print(f"digits: {len(data[0])} train / {len(data[2])} test, MLP 64-{a.hidden}-10, batch {a.batch}, "
          f"{a.epochs} epochs, Adam(lr=1e-3), {fastml.get_num_threads()} threads")
    s, loss, acc = train_fastml(*data, a.hidden, a.epochs, a.batch, a.seed)
    print(f"fastml: {s:6.2f} s  test loss {loss:.4f}  test accuracy {acc:.4f}")
    try:
        import torch

        torch.set_num_threads(fastml.get_num_threads())
    except ImportError:
        return
    s_t, loss_t, acc_t = train_torch(*data, a.hidden, a.epochs, a.batch, a.seed)
    print(f"torch:  {s_t:6.2f} s  test loss {loss_t:.4f}  test accuracy {acc_t:.4f}   (fastml {s_t / s:.2f}x faster)")


if __name__ == "__main__":
    main()
