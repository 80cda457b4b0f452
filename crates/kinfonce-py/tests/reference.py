"""A plain PyTorch implementation of every loss and pairing (autograd gives the gradients),
written from the formulas, independent of kinfonce's engine. It reads a loss in kinfonce-loss's
JSON form (``KernelInfoNCE.spec(dim)``). Small sizes only: it holds n x m x d differences."""

import math

import torch


def _distance(x, y, p):
    """(||x_i - y_j||_p as a base, the exponent's scale): p = 2 returns the squared norm."""
    diff = x[:, None, :] - y[None, :, :]
    if p == "L2":
        return diff.square().sum(-1), 0.5
    if p == "L1":
        return diff.abs().sum(-1), 1.0
    return diff.abs().amax(-1), 1.0


def _masked_pow(base, e, mask):
    """base^e, 0 where masked or zero, with a finite gradient (mask before the power)."""
    singular = mask | (base <= 0)
    safe = torch.where(singular, torch.ones_like(base), base)
    return torch.where(singular, torch.zeros_like(base), safe**e)


def log_kernel(kernel, x, y, mask):
    """ln K(x_i, y_j) for every pair (n x m); entries under `mask` are meaningless."""
    kind = kernel["type"]
    if kind == "exp":
        base, scale = _distance(x, y, kernel.get("p", "L2"))
        return -_masked_pow(base, kernel["gamma"] * scale, mask) / kernel["tau"]
    if kind == "mixture":
        terms = [
            math.log(c["weight"]) + log_kernel({"type": "exp", **c["kernel"]}, x, y, mask)
            for c in kernel["components"]
        ]
        return torch.logsumexp(torch.stack(terms), 0)
    if kind == "arc_cos":
        tau = kernel["tau"]
        c = (tau * (x @ y.T) + 1 - tau).clamp(-1, 1)
        c = torch.where(mask, torch.zeros_like(c), c)  # acos'(1) is infinite: mask first
        t = torch.acos(c)
        cos, sin = torch.cos(t), torch.sin(t)
        k = {
            1: math.pi - t,
            2: sin + (math.pi - t) * cos,
            3: 3 * sin * cos + (math.pi - t) * (1 + 2 * cos**2),
        }[kernel["order"]]
        return torch.log(torch.where(mask, torch.ones_like(k), k))
    raise ValueError(kind)


def _softmax_loss(logits, positive, exclude):
    """mean_i [ logsumexp_{j not excluded} logits_ij - positive_i ]."""
    logits = logits.masked_fill(exclude, -math.inf)
    return (torch.logsumexp(logits, 1) - positive).mean()


def _kernel_loss(kernel, pairing, inputs):
    if pairing == "simclr":
        z = torch.cat(inputs)
        n, b = z.shape[0], inputs[0].shape[0]
        eye = torch.eye(n, dtype=torch.bool)
        logits = log_kernel(kernel, z, z, eye)
        pos = logits[torch.arange(n), (torch.arange(n) + b) % n]
        return _softmax_loss(logits, pos, eye)
    if pairing == "moco":
        q, k, queue = inputs
        none = torch.zeros(q.shape[0], queue.shape[0], dtype=torch.bool)
        logits = log_kernel(kernel, q, queue, none)
        pos = torch.diagonal(log_kernel(kernel, q, k, torch.zeros(q.shape[0], k.shape[0], dtype=torch.bool)))
        return _softmax_loss(logits, pos, none)
    if pairing == "clip":
        a, b = inputs
        none = torch.zeros(a.shape[0], b.shape[0], dtype=torch.bool)
        ab = log_kernel(kernel, a, b, none)
        ba = log_kernel(kernel, b, a, none)
        return 0.5 * (_softmax_loss(ab, torch.diagonal(ab), none) + _softmax_loss(ba, torch.diagonal(ba), none))
    raise ValueError(pairing)


def reference_loss(spec, pairing, inputs):
    """The loss `spec` (kinfonce-loss JSON) of `inputs` in `pairing`, differentiable."""
    kind = spec["loss"]
    if kind == "info_nce":
        return _kernel_loss(spec["kernel"], pairing, inputs)
    if kind == "sum":
        return sum(w * _kernel_loss(k, pairing, inputs) for w, k in spec["parts"])
    if kind == "concat":
        s, lam = spec["split"], spec["lambda"]
        first = _kernel_loss(spec["first"], pairing, [t[:, :s] for t in inputs])
        second = _kernel_loss(spec["second"], pairing, [t[:, s:] for t in inputs])
        return lam * first + (1 - lam) * second
    if kind == "spectral":
        z1, z2 = inputs
        b = z1.shape[0]
        z = torch.cat(inputs)
        gram = z @ z.T
        off = gram.masked_fill(torch.eye(2 * b, dtype=torch.bool), 0).square().sum()
        return off / (b * (b - 1)) - 2 / b * (z1 * z2).sum()
    raise ValueError(kind)
