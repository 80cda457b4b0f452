"""Fused Triton kernels for exponential kernels with p = 2 and one-softmax mixtures of them.

Each tile of pairs is computed in registers: squared distances from the row norms and a
``tl.dot`` tile (clamped at 0 before the power), ln K and its slope, the positive and the
excluded pair masked, then either merged into each row's running (max, sum) (forward) or turned
into gradient weights and multiplied back (two backward kernels, one over anchor blocks, one over
candidate blocks, so no atomics and a deterministic sum). Accumulation is float32; float32 dot
products are IEEE unless TF32 is allowed (``torch.backends.cuda.matmul.allow_tf32``). Float16
and bfloat16 values are exact in TF32, so their distance products always use it.

The same source runs on the CPU under ``TRITON_INTERPRET=1`` (numpy), which the tests use.
"""

from __future__ import annotations

import contextlib
from typing import Dict

import torch
import triton
import triton.language as tl

from ._infonce import SQ, Kernel

# Tile sizes: anchor rows, candidate rows, the d chunk of the dot products and the d chunk of
# the gradient (tl.dot needs 16 or more).
BLOCKS: Dict[str, int] = {"rows": 64, "cols": 64, "k": 64, "d_out": 128}


@triton.jit
def _distances(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, rows, cols, n, m, d,
               BLOCK_K: tl.constexpr, DOT: tl.constexpr):
    """Squared distances |a_i|^2 + |c_j|^2 - 2 a_i.c_j of a tile, clamped at 0 (rounding)."""
    acc = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(a_ptr + rows[:, None] * d + ks[None, :],
                    mask=(rows[:, None] < n) & (ks[None, :] < d), other=0.0)
        c = tl.load(c_ptr + cols[:, None] * d + ks[None, :],
                    mask=(cols[:, None] < m) & (ks[None, :] < d), other=0.0)
        acc = tl.dot(a, tl.trans(c), acc, input_precision=DOT)
    a_sq = tl.load(a_sq_ptr + rows, mask=rows < n, other=0.0)
    c_sq = tl.load(c_sq_ptr + cols, mask=cols < m, other=0.0)
    return tl.maximum(a_sq[:, None] + c_sq[None, :] - 2.0 * acc, 0.0)


@triton.jit
def _term(q, lw, e, it):
    """ln w - q^e / tau and its slope in q (0^e = 0; the slope at q = 0 is -1 / tau when e = 1,
    else 0, as the CPU engine)."""
    safe = tl.where(q > 0, q, 1.0)
    qe = tl.where(e == 1.0, q, tl.where(e == 0.5, tl.sqrt(q), tl.exp2(e * tl.log2(safe))))
    qe = tl.where(q > 0, qe, 0.0)
    slope = tl.where(q > 0, -e * it * qe / safe, tl.where(e == 1.0, -it, 0.0))
    return lw - qe * it, slope


@triton.jit
def _log_kernel(q, kp_ptr, PARTS: tl.constexpr):
    """ln K(q) and d ln K / dq for ln K = ln sum_k w_k exp(-q^e_k / tau_k); kp_ptr holds
    (ln w_k, e_k, 1 / tau_k) for each part."""
    if PARTS == 1:
        s, slope = _term(q, tl.load(kp_ptr), tl.load(kp_ptr + 1), tl.load(kp_ptr + 2))
    else:
        top = tl.full(q.shape, float("-inf"), tl.float32)
        for k in tl.static_range(PARTS):
            t, _ = _term(q, tl.load(kp_ptr + 3 * k), tl.load(kp_ptr + 3 * k + 1), tl.load(kp_ptr + 3 * k + 2))
            top = tl.maximum(top, t)
        total = tl.zeros(q.shape, tl.float32)
        weighted = tl.zeros(q.shape, tl.float32)
        for k in tl.static_range(PARTS):
            t, d = _term(q, tl.load(kp_ptr + 3 * k), tl.load(kp_ptr + 3 * k + 1), tl.load(kp_ptr + 3 * k + 2))
            w = tl.exp(t - top)
            total += w
            weighted += w * d
        s = top + tl.log(total)
        slope = weighted / total
    return s, slope


@triton.jit
def _dead(rows, cols, pos_ptr, excl_ptr, n, m):
    """Pairs outside the negatives: past the edge, the positive, the excluded one."""
    p = tl.load(pos_ptr + rows, mask=rows < n, other=-1)
    x = tl.load(excl_ptr + rows, mask=rows < n, other=-1)
    c = cols[None, :]
    return (c >= m) | (rows[:, None] >= n) | (c == p[:, None]) | (c == x[:, None])


@triton.jit
def _negatives_kernel(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, pos_ptr, excl_ptr, kp_ptr, max_ptr, sum_ptr,
                      n, m, d, PARTS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_K: tl.constexpr, DOT: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    run_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    run_sum = tl.zeros((BLOCK_M,), tl.float32)
    for c0 in range(0, m, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        q = _distances(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, rows, cols, n, m, d, BLOCK_K, DOT)
        s, _ = _log_kernel(q, kp_ptr, PARTS)
        s = tl.where(_dead(rows, cols, pos_ptr, excl_ptr, n, m), float("-inf"), s)
        new = tl.maximum(run_max, tl.max(s, 1))
        shift = tl.where(new == float("-inf"), 0.0, new)
        run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(s - shift[:, None]), 1)
        run_max = new
    tl.store(max_ptr + rows, run_max, mask=rows < n)
    tl.store(sum_ptr + rows, run_sum, mask=rows < n)


@triton.jit
def _weights(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, pos_ptr, excl_ptr, kp_ptr, lse_ptr, rows, cols,
             n, m, d, PARTS: tl.constexpr, BLOCK_K: tl.constexpr, DOT: tl.constexpr):
    """w_ij = slope_ij exp(s_ij - lse_i) over the tile's negatives, 0 elsewhere."""
    q = _distances(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, rows, cols, n, m, d, BLOCK_K, DOT)
    s, slope = _log_kernel(q, kp_ptr, PARTS)
    lse = tl.load(lse_ptr + rows, mask=rows < n, other=0.0)
    dead = _dead(rows, cols, pos_ptr, excl_ptr, n, m)
    # Masked before the exp: the self pair's exp(s - lse) can overflow.
    w = slope * tl.exp(tl.where(dead, float("-inf"), s - lse[:, None]))
    return tl.where(dead, 0.0, w)


@triton.jit
def _anchor_grad_kernel(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, pos_ptr, excl_ptr, kp_ptr, lse_ptr, out_ptr,
                        n, m, d, PARTS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr,
                        DOT_W: tl.constexpr):
    """d_a_i = 2 (sum_j w_ij) a_i - 2 sum_j w_ij c_j for a block of anchors and a chunk of d."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ds = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    w_sum = tl.zeros((BLOCK_M,), tl.float32)
    for c0 in range(0, m, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        w = _weights(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, pos_ptr, excl_ptr, kp_ptr, lse_ptr, rows, cols,
                     n, m, d, PARTS, BLOCK_K, DOT)
        w_sum += tl.sum(w, 1)
        c = tl.load(c_ptr + cols[:, None] * d + ds[None, :],
                    mask=(cols[:, None] < m) & (ds[None, :] < d), other=0.0)
        acc = tl.dot(w, c, acc, input_precision=DOT_W)
    inside = (rows[:, None] < n) & (ds[None, :] < d)
    a = tl.load(a_ptr + rows[:, None] * d + ds[None, :], mask=inside, other=0.0)
    tl.store(out_ptr + rows[:, None] * d + ds[None, :], 2.0 * (w_sum[:, None] * a - acc), mask=inside)


@triton.jit
def _candidate_grad_kernel(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, pos_ptr, excl_ptr, kp_ptr, lse_ptr, out_ptr,
                           n, m, d, PARTS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr,
                           DOT_W: tl.constexpr):
    """d_c_j = 2 (sum_i w_ij) c_j - 2 sum_i w_ij a_i for a block of candidates and a chunk of d."""
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    ds = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    w_sum = tl.zeros((BLOCK_N,), tl.float32)
    for r0 in range(0, n, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        w = _weights(a_ptr, c_ptr, a_sq_ptr, c_sq_ptr, pos_ptr, excl_ptr, kp_ptr, lse_ptr, rows, cols,
                     n, m, d, PARTS, BLOCK_K, DOT)
        w_sum += tl.sum(w, 0)
        a = tl.load(a_ptr + rows[:, None] * d + ds[None, :],
                    mask=(rows[:, None] < n) & (ds[None, :] < d), other=0.0)
        acc = tl.dot(tl.trans(w), a, acc, input_precision=DOT_W)
    inside = (cols[:, None] < m) & (ds[None, :] < d)
    c = tl.load(c_ptr + cols[:, None] * d + ds[None, :], mask=inside, other=0.0)
    tl.store(out_ptr + cols[:, None] * d + ds[None, :], 2.0 * (w_sum[:, None] * c - acc), mask=inside)


def _tf32_allowed() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32)


def _block(size: int, limit: int) -> int:
    return max(16, min(limit, triton.next_power_of_2(size)))


class TritonSweep:
    """The sweep of ``_infonce._InfoNCE`` in Triton kernels (float32 inputs, contiguous)."""

    def __init__(self, half_inputs: bool = False) -> None:
        tf32 = _tf32_allowed()
        self.dot = "tf32" if (tf32 or half_inputs) else "ieee"
        self.dot_w = "tf32" if tf32 else "ieee"

    @staticmethod
    def _args(kernel: Kernel, a, c, pos, excl):
        assert kernel.geometry == SQ and a.dtype == torch.float32
        a, c = a.contiguous(), c.contiguous()
        none = torch.full((a.shape[0],), -1, dtype=torch.int32, device=a.device)
        pos = none if pos is None else pos.to(torch.int32)
        excl = none if excl is None else excl.to(torch.int32)
        kp = torch.tensor(kernel.parts, dtype=torch.float32, device=a.device).flatten()
        return a, c, a.square().sum(1), c.square().sum(1), pos, excl, kp

    def _sizes(self, a):
        d = a.shape[1]
        return (BLOCKS["rows"], BLOCKS["cols"], _block(d, BLOCKS["k"]), _block(d, BLOCKS["d_out"]))

    def negatives(self, kernel: Kernel, a, c, pos, excl):
        a, c, a_sq, c_sq, pos, excl, kp = self._args(kernel, a, c, pos, excl)
        n, m, d = a.shape[0], c.shape[0], a.shape[1]
        bm, bn, bk, _ = self._sizes(a)
        neg_max = torch.empty(n, dtype=torch.float32, device=a.device)
        neg_sum = torch.empty_like(neg_max)
        with _on(a):
            _negatives_kernel[(triton.cdiv(n, bm),)](
                a, c, a_sq, c_sq, pos, excl, kp, neg_max, neg_sum, n, m, d,
                PARTS=len(kernel.parts), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, DOT=self.dot)
        return neg_max, neg_sum

    def gradients(self, kernel: Kernel, a, c, pos, excl, lse):
        a, c, a_sq, c_sq, pos, excl, kp = self._args(kernel, a, c, pos, excl)
        n, m, d = a.shape[0], c.shape[0], a.shape[1]
        bm, bn, bk, bd = self._sizes(a)
        lse = lse.to(torch.float32).contiguous()
        da, dc = torch.empty_like(a), torch.empty_like(c)
        args = (a, c, a_sq, c_sq, pos, excl, kp, lse)
        meta = dict(PARTS=len(kernel.parts), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd,
                    DOT=self.dot, DOT_W=self.dot_w)
        with _on(a):
            _anchor_grad_kernel[(triton.cdiv(n, bm), triton.cdiv(d, bd))](*args, da, n, m, d, **meta)
            _candidate_grad_kernel[(triton.cdiv(m, bn), triton.cdiv(d, bd))](*args, dc, n, m, d, **meta)
        return da, dc


def _on(t: torch.Tensor):
    """Kernels launch on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
