"""The exact tiled path in torch operations: runs wherever torch runs.

Tiles of ``rows x cols`` pairs: forward streams each anchor's log-sum-exp over the column
blocks with a running maximum; backward recomputes every tile and accumulates the gradients of
its rows and of its columns. Extra memory O((n + m) d + rows x cols): no n x m matrix is held.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from ._infonce import DOT, L1, LINF, SQ, Kernel

# Anchor rows and candidate columns per tile, by device type: cache-sized on the CPU (measured:
# 512 x 512 is the fastest there); large elsewhere, where every tile costs a dozen kernel
# launches (a 4096 x 4096 float32 tile is 64 MiB). p = 1 and inf tiles keep rows x cols x d
# differences in backward, so their column blocks are narrower by d / 16.
BLOCK: Dict[str, Tuple[int, int]] = {"cpu": (512, 512), "other": (4096, 4096)}


class TiledSweep:
    def __init__(self, block: Optional[Tuple[int, int]] = None, device: str = "cpu") -> None:
        self.rows, self.cols = block or BLOCK.get(device, BLOCK["other"])

    def _cols(self, kernel: Kernel, d: int) -> int:
        if kernel.geometry in (L1, LINF):
            return max(1, self.cols * 16 // max(d, 16))
        return self.cols

    def _tiles(self, kernel, a, c):
        """(r0, r1, c0, c1) of every tile, row block by row block."""
        cols = self._cols(kernel, a.shape[1])
        for r0 in range(0, a.shape[0], self.rows):
            for c0 in range(0, c.shape[0], cols):
                yield r0, min(r0 + self.rows, a.shape[0]), c0, min(c0 + cols, c.shape[0])

    @staticmethod
    def _geometry(kernel: Kernel, a, c, a_sq, c_sq, r0, r1, c0, c1):
        """t(a_i, c_j) over the tile."""
        x, y = a[r0:r1], c[c0:c1]
        if kernel.geometry == SQ:
            # Rounding can make a tiny squared distance negative.
            norms = a_sq[r0:r1, None] + c_sq[None, c0:c1]
            return torch.addmm(norms, x, y.T, alpha=-2).clamp_min_(0)
        if kernel.geometry == DOT:
            return x @ y.T
        return torch.cdist(x, y, p=1.0 if kernel.geometry == L1 else float("inf"))

    @staticmethod
    def _mask(t, pos, excl, r0, r1, c0, value):
        """Sets the tile's pairs left out of the negatives (the positive, the excluded one) to
        `value`: one entry per row at most, so a gather and a scatter, with no host sync."""
        for idx in (pos, excl):
            if idx is not None:
                j = idx[r0:r1, None] - c0
                hit = (j >= 0) & (j < t.shape[1])
                j = j.clamp(0, t.shape[1] - 1)
                t.scatter_(1, j, torch.where(hit, torch.full_like(hit, value, dtype=t.dtype), t.gather(1, j)))

    @staticmethod
    def _norms(kernel, a, c):
        if kernel.geometry != SQ:
            return None, None
        return a.square().sum(1), c.square().sum(1)

    def negatives(self, kernel: Kernel, a, c, pos, excl):
        """Each anchor's (max, sum of exp(s - max)) over its negatives."""
        a_sq, c_sq = self._norms(kernel, a, c)
        neg_max = torch.full((a.shape[0],), -torch.inf, dtype=a.dtype, device=a.device)
        neg_sum = torch.zeros_like(neg_max)
        for r0, r1, c0, c1 in self._tiles(kernel, a, c):
            s = kernel.log_k(self._geometry(kernel, a, c, a_sq, c_sq, r0, r1, c0, c1))
            self._mask(s, pos, excl, r0, r1, c0, -torch.inf)
            old = neg_max[r0:r1]
            new = torch.maximum(old, s.amax(1))
            shift = torch.where(new == -torch.inf, torch.zeros_like(new), new)
            neg_sum[r0:r1] = neg_sum[r0:r1] * (old - shift).exp() + (s - shift[:, None]).exp().sum(1)
            neg_max[r0:r1] = new
        return neg_max, neg_sum

    def gradients(self, kernel: Kernel, a, c, pos, excl, lse):
        """(sum_j w_ij d t_ij / d a_i, sum_i w_ij d t_ij / d c_j) with w_ij = slope_ij
        exp(s_ij - lse_i) over the negatives (the 1 / n and the incoming gradient come later)."""
        a_sq, c_sq = self._norms(kernel, a, c)
        da, dc = torch.zeros_like(a), torch.zeros_like(c)
        for r0, r1, c0, c1 in self._tiles(kernel, a, c):
            s, slope = kernel.log_k_slope(self._geometry(kernel, a, c, a_sq, c_sq, r0, r1, c0, c1))
            w = slope.mul_((s - lse[r0:r1, None]).exp_())
            self._mask(w, pos, excl, r0, r1, c0, 0.0)
            gx, gy = _backprop(kernel.geometry, w, a[r0:r1], c[c0:c1])
            da[r0:r1] += gx
            dc[c0:c1] += gy
        return da, dc


def _backprop(geometry: str, w, x, y):
    """(sum_j w_ij d t(x_i, y_j) / d x_i, sum_i w_ij d t / d y_j) for a tile."""
    if geometry == SQ:
        return (2 * (w.sum(1)[:, None] * x - w @ y), 2 * (w.sum(0)[:, None] * y - w.T @ x))
    if geometry == DOT:
        return w @ y, w.T @ x
    # torch's own cdist backward (sign of the differences; the largest coordinate for inf).
    with torch.enable_grad():
        x_, y_ = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
        t = torch.cdist(x_, y_, p=1.0 if geometry == L1 else float("inf"))
        return torch.autograd.grad(t, (x_, y_), w)
