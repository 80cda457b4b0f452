"""The losses in torch operations, on any device, for the tiled and the Triton engines.

For anchors a_i, candidates c_j and logits s_ij = ln K(a_i, c_j)::

    L = (1 / n) sum_i [ LSE_{j in D(i)} s_ij - s_i,pos(i) ]

A *sweep* (``_tiled.TiledSweep`` or ``_triton.TritonSweep``) streams the tiles of pairs: in
forward it returns each anchor's running (max, sum of exp) over its negatives, in backward it
recomputes the tiles and turns the weights d L / d t_ij into gradients. Everything else is
shared here and follows the CPU engine (kinfonce-loss): the positive pair is evaluated exactly
from the difference of its rows (never |x|^2 + |y|^2 - 2 x.y), masked out of the tiles and
joined to its negatives in float64; the self pair is masked before the power; no eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.distributed as dist

# The geometry value t(x, y) a kernel reads: squared L2 distance, L1 or L-inf distance, or the
# dot product (arc-cosine kernels).
SQ, L1, LINF, DOT = "sq", "l1", "linf", "dot"
_NORMS = {"L2": SQ, "L1": L1, "Inf": LINF}


@dataclass(frozen=True)
class Kernel:
    """ln K as a function of t. Exponential kernels and mixtures: ln sum_k w_k exp(-t^e_k tau_k^-1)
    with ``parts`` = ((ln w_k, e_k, 1 / tau_k), ...) and e = gamma / 2 on the squared L2 distance
    (gamma on L1 and L-inf). Arc-cosine kernels: ``order`` and ``tau`` on t = <x, y>."""

    geometry: str
    parts: Tuple[Tuple[float, float, float], ...] = ()
    order: int = 0
    tau: float = 0.0

    @staticmethod
    def parse(spec: Dict[str, Any]) -> "Kernel":
        """From kinfonce-loss's JSON form (already validated by the native description)."""
        if spec["type"] == "arc_cos":
            return Kernel(DOT, order=int(spec["order"]), tau=float(spec["tau"]))
        if spec["type"] == "exp":
            comps = [(1.0, spec)]
        else:
            comps = [(c["weight"], c["kernel"]) for c in spec["components"]]
        geometry = _NORMS[comps[0][1].get("p", "L2")]
        scale = 0.5 if geometry == SQ else 1.0
        parts = tuple((math.log(w), k["gamma"] * scale, 1.0 / k["tau"]) for w, k in comps)
        return Kernel(geometry, parts=parts)

    def log_k(self, t: torch.Tensor) -> torch.Tensor:
        if self.geometry == DOT or len(self.parts) > 1:
            return self.log_k_slope(t)[0]
        lw, e, it = self.parts[0]
        return _power(t, e) * -it if lw == 0 else lw - _power(t, e) * it

    def log_k_slope(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(ln K(t), d ln K / dt), elementwise."""
        if self.geometry == DOT:
            return _arc_cos(t, self.order, self.tau)
        terms = []
        for lw, e, it in self.parts:
            te = _power(t, e)
            # d t^e / dt at t = 0: 1 when e = 1, else taken as 0 (the subgradient).
            d = (te / t).mul_(-e * it).masked_fill_(t <= 0, -it if e == 1.0 else 0.0)
            terms.append((te * -it if lw == 0 else lw - te * it, d))
        if len(terms) == 1:
            return terms[0]
        logits = torch.stack([s for s, _ in terms])
        weights = torch.softmax(logits, 0)
        slope = sum(w * d for w, (_, d) in zip(weights, terms))
        return torch.logsumexp(logits, 0), slope


def _power(t: torch.Tensor, e: float) -> torch.Tensor:
    """t^e for t >= 0 (0^e = 0), exact for the common exponents."""
    if e == 1.0:
        return t
    if e == 0.5:
        return t.sqrt()
    return t.pow(e)


def _arc_cos(u: torch.Tensor, order: int, tau: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """ln J(t) and its slope in u, for t = acos(clamp(tau u + 1 - tau, -1, 1)); in float64, as
    the CPU engine computes it (acos is ill-conditioned near 1)."""
    raw = tau * u.double() + (1.0 - tau)
    v = raw.clamp(-1.0, 1.0)
    t = torch.acos(v)
    s, c = torch.sin(t), torch.cos(t)
    pi_t = math.pi - t
    if order == 1:
        j, dj = pi_t, -torch.ones_like(t)
    elif order == 2:
        j, dj = s + pi_t * c, -pi_t * s
    else:
        j, dj = 3 * s * c + pi_t * (1 + 2 * c * c), -4 * s * s - 4 * pi_t * s * c
    inside = (raw > -1.0) & (raw < 1.0)
    dt_du = torch.where(inside, -tau / (1 - v * v).sqrt(), torch.zeros_like(v))
    slope = torch.where(j > 0, dj / j * dt_du, torch.zeros_like(j))
    return j.log().to(u.dtype), slope.to(u.dtype)


def pair_value(geometry: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """t(x_i, y_i) row by row, directly from the rows."""
    if geometry == DOT:
        return (x * y).sum(1)
    diff = x - y
    if geometry == SQ:
        return diff.square().sum(1)
    if geometry == L1:
        return diff.abs().sum(1)
    return diff.abs().amax(1)


def pair_grad(geometry: str, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """(w_i d t(x_i, y_i) / d x_i, w_i d t / d y_i)."""
    w = w[:, None]
    if geometry == DOT:
        return w * y, w * x
    diff = x - y
    if geometry == SQ:
        g = 2 * w * diff
    elif geometry == L1:
        g = w * diff.sign()
    else:  # the first coordinate of largest |x - y|, as the CPU engine
        k = diff.abs().argmax(1, keepdim=True)
        g = torch.zeros_like(diff).scatter_(1, k, w * diff.gather(1, k).sign())
    return g, -g


def finish_rows(neg_max, neg_sum, s_pos, slope_pos, in_denominator: bool):
    """Joins each anchor's positive to its negatives' (max, sum) in float64, as the CPU engine:
    with r = sum_neg exp(s_j - s_pos), loss_i = ln(1 + r) and p_pos - 1 = -r / (1 + r), which
    keeps ln(1 + tiny) exact in float32. Returns (mean loss, ln denominator, d L / d t_pos * n)."""
    m, s, sp = neg_max.double(), neg_sum.double(), s_pos.double()
    if not in_denominator:  # MoCo: the key is outside the softmax
        lse = m + s.log()
        return (lse - sp).mean(), lse, -slope_pos.double()
    with torch.no_grad():
        big = m > sp
        # r >= 1: loss = (m - s_pos) + ln(sum + exp(s_pos - m)), p_pos = 1 / (1 + r).
        inv_r = (sp - m).exp() / s
        loss_big = m - sp + (s + (sp - m).exp()).log()
        r = s * (m - sp).exp()
        loss = torch.where(big, loss_big, torch.log1p(r))
        p_minus_1 = torch.where(big, -1 / (1 + inv_r), -r / (1 + r))
        empty = s == 0  # no negatives at all
        loss = torch.where(empty, torch.zeros_like(loss), loss)
        p_minus_1 = torch.where(empty, torch.zeros_like(p_minus_1), p_minus_1)
    return loss.mean(), sp + loss, p_minus_1 * slope_pos.double()


class _InfoNCE(torch.autograd.Function):
    """Anchors a against candidates c; the positive of anchor i is c[pos[i]] (in the softmax) or
    rows[i] (outside it, MoCo's key); excl[i] is left out of anchor i's softmax. Saves per-row
    statistics only; backward recomputes the tiles."""

    @staticmethod
    def forward(ctx, sweep, kernel, a, c, rows, pos, excl):  # type: ignore[override]
        y = rows if rows is not None else c[pos]
        s_pos, slope_pos = kernel.log_k_slope(pair_value(kernel.geometry, a, y))
        neg_max, neg_sum = sweep.negatives(kernel, a, c, pos, excl)
        loss, lse, pos_weight = finish_rows(neg_max, neg_sum, s_pos, slope_pos, rows is None)
        ctx.sweep, ctx.kernel = sweep, kernel
        ctx.save_for_backward(a, c, y, pos, excl, lse.to(a.dtype), pos_weight.to(a.dtype))
        ctx.moco = rows is not None
        return loss.to(a.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        a, c, y, pos, excl, lse, pos_weight = ctx.saved_tensors
        kernel = ctx.kernel
        da, dc = ctx.sweep.gradients(kernel, a, c, pos, excl, lse)
        ga, gy = pair_grad(kernel.geometry, pos_weight, a, y)
        da += ga
        dy = None
        if ctx.moco:
            dy = gy
        else:
            dc.index_add_(0, pos, gy)
        scale = grad / a.shape[0]
        return (None, None, da * scale, dc * scale, None if dy is None else dy * scale, None, None)


def _core(sweep, kernel, a, c, rows=None, pos=None, excl=None):
    return _InfoNCE.apply(sweep, kernel, a, c, rows, pos, excl)


def _kernel_loss(sweep, kernel: Kernel, pairing: str, inputs: Sequence[torch.Tensor], local):
    dev = inputs[0].device
    if pairing == "simclr":
        b = inputs[0].shape[0]
        z = torch.cat(inputs)
        idx = torch.arange(2 * b, device=dev)
        return _core(sweep, kernel, z, z, pos=(idx + b) % (2 * b), excl=idx)
    if pairing == "moco":
        q, k, queue = inputs
        return _core(sweep, kernel, q, queue, rows=k)
    if pairing == "clip":
        a, b = inputs
        diag = torch.arange(a.shape[0], device=dev)
        return 0.5 * (_core(sweep, kernel, a, b, pos=diag) + _core(sweep, kernel, b, a, pos=diag))
    # Gathered: this rank's rows offset..offset + count of both views are the anchors.
    offset, count = local
    bt = inputs[0].shape[0]
    z = torch.cat(inputs)
    mine = torch.arange(offset, offset + count, device=dev)
    mine = torch.cat([mine, mine + bt])
    return _core(sweep, kernel, z[mine], z, pos=(mine + bt) % (2 * bt), excl=mine)


def spectral(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """HaoChen et al.'s loss through the d x d Gram of the columns: sum_{i != j} <z_i, z_j>^2 =
    ||Z^T Z||_F^2 - sum_i |z_i|^4, so memory is O(B d + d^2) and no blocking is needed."""
    b = z1.shape[0]
    if b < 2:
        raise ValueError(f"z1: the spectral contrastive loss needs a batch of at least 2 pairs, got {b}")
    z = torch.cat([z1, z2])
    gram = z.T @ z
    off = gram.square().sum() - z.square().sum(1).square().sum()
    return off / (b * (b - 1)) - 2.0 / b * (z1 * z2).sum()


def loss(sweep, spec: Dict[str, Any], pairing: str, inputs: List[torch.Tensor], local=None):
    """The loss ``spec`` (kinfonce-loss's JSON form) in ``pairing`` ("simclr", "moco", "clip" or
    "gathered" with ``local`` = (offset, count)), differentiable."""
    kind = spec["loss"]
    if kind == "spectral":
        if pairing != "simclr":
            raise ValueError(
                f"spec: the spectral contrastive loss is defined for the SimCLR pairing only, not {pairing}"
            )
        return spectral(*inputs)
    run = lambda k, ins: _kernel_loss(sweep, Kernel.parse(k), pairing, ins, local)  # noqa: E731
    if kind == "info_nce":
        return run(spec["kernel"], inputs)
    if kind == "sum":
        return sum(w * run(k, inputs) for w, k in spec["parts"])
    split, lam = spec["split"], spec["lambda"]
    first = run(spec["first"], [t[:, :split] for t in inputs])
    second = run(spec["second"], [t[:, split:] for t in inputs])
    return lam * first + (1 - lam) * second


def kernels(spec: Dict[str, Any]) -> List[Kernel]:
    """Every kernel a loss evaluates (none for the spectral loss)."""
    kind = spec["loss"]
    if kind == "info_nce":
        return [Kernel.parse(spec["kernel"])]
    if kind == "sum":
        return [Kernel.parse(k) for _, k in spec["parts"]]
    if kind == "concat":
        return [Kernel.parse(spec["first"]), Kernel.parse(spec["second"])]
    return []


class _AllGather(torch.autograd.Function):
    """Every rank's rows, on the tensor's own device (no host copy). Backward: every rank's loss
    depends on every gathered row, so the gradients are summed over ranks and this rank keeps its
    own rows (DDP then averages: the gradient of the mean loss)."""

    @staticmethod
    def forward(ctx, z, group, world, rank):  # type: ignore[override]
        parts = [torch.empty_like(z) for _ in range(world)]
        dist.all_gather(parts, z.contiguous(), group=group)
        ctx.group, ctx.rank, ctx.rows = group, rank, z.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None, None, None


def all_gather(z: torch.Tensor, group) -> torch.Tensor:
    return _AllGather.apply(z, group, dist.get_world_size(group), dist.get_rank(group))
