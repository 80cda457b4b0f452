"""The Kernel-InfoNCE losses as a functional form and a Module, on three engines (see
:func:`kinfonce._engine.choose_engine`): the fused Rust engine for CPU tensors (loss and analytic
gradients from one call; backward only scales them), the exact tiled path in torch operations
(any device) and fused Triton kernels (CUDA).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist

from . import _engine, _infonce, _native
from ._engine import ENGINES

PAIRINGS = ("simclr", "moco", "clip")
PRESETS: Tuple[str, ...] = tuple(_native.PRESETS)

Number = Union[int, float]
Spec = Union[str, Dict[str, Any]]


def _describe(
    preset: Optional[str],
    gamma: Optional[Number],
    tau: Optional[Number],
    p: Optional[Union[Number, str]],
    spec: Optional[Spec],
) -> _native.Loss:
    """The native loss description; kinfonce-loss checks every parameter."""
    if spec is not None and not isinstance(spec, str):
        if not isinstance(spec, dict):
            raise TypeError(f"spec: expected a dict or a JSON string, got {type(spec).__name__}")
        spec = json.dumps(spec)
    if p is not None:
        if isinstance(p, bool) or not isinstance(p, (int, float, str)):
            raise TypeError(f"p: expected 1, 2 or inf, got {p!r}")
        p = "inf" if p == math.inf else str(p)
    return _native.Loss(preset=preset, gamma=gamma, tau=tau, p=p, spec=spec)


def _compute_dtype(name: str, t: torch.Tensor) -> torch.dtype:
    """float32 and float64 run as they are; float16 and bfloat16 are upcast to float32."""
    if t.dtype in (torch.float32, torch.float64):
        return t.dtype
    if t.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    raise TypeError(
        f"{name}: dtype {t.dtype} is not supported; expected float32 or float64 "
        "(float16 and bfloat16 are upcast to float32)"
    )


def _check_inputs(names: Sequence[str], inputs: Sequence[Any]) -> torch.dtype:
    for name, t in zip(names, inputs):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    first = inputs[0]
    dtype = _compute_dtype(names[0], first)
    for name, t in zip(names, inputs):
        if t.dtype != first.dtype:
            raise TypeError(f"{name}: dtype {t.dtype} differs from {names[0]}'s {first.dtype}")
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device}, {names[0]} on {first.device}")
        if t.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor (batch x dim), got shape {tuple(t.shape)}")
    return dtype


def _check_values(names: Sequence[str], inputs: Sequence[torch.Tensor]) -> None:
    """The native engine's checks, with its messages, for the engines in torch operations."""
    d = inputs[0].shape[1]
    for name, t in zip(names, inputs):
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(
                f"{name} is {t.shape[0]} x {t.shape[1]}: every input needs at least one row and one column"
            )
        if t.shape[1] != d:
            raise ValueError(f"{name} has {t.shape[1]} columns, {names[0]} has {d}")
    if inputs[0].shape[0] != inputs[1].shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (paired views), "
            f"got {inputs[0].shape[0]} and {inputs[1].shape[0]}"
        )
    # One synchronisation for all inputs; the slow search only when one is bad.
    if not bool(torch.stack([torch.isfinite(t).all() for t in inputs]).all()):
        for name, t in zip(names, inputs):
            bad = (~torch.isfinite(t)).nonzero()
            if len(bad):
                r, c = bad[0].tolist()
                value = {math.inf: "inf", -math.inf: "-inf"}.get(t[r, c].item(), "NaN")
                raise ValueError(f"input `{name}` has a non-finite value {value} at row {r}, column {c}")


def _host(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A CPU, C-contiguous tensor of `dtype`: the same memory when `t` already is one."""
    return t.detach().to(device="cpu", dtype=dtype).contiguous()


def _run(loss: _native.Loss, pairing: str, names, hosts, local_rows=None):
    grads = [torch.empty_like(h) for h in hosts]
    value = loss.compute(
        pairing, [h.numpy() for h in hosts], [g.numpy() for g in grads], list(names), local_rows
    )
    return value, grads


class _KernelInfoNCEFunction(torch.autograd.Function):
    """forward: loss and gradients from the engine; backward: the saved gradients scaled."""

    @staticmethod
    def forward(ctx, loss, pairing, names, group, *inputs):  # type: ignore[override]
        dtype = _compute_dtype(names[0], inputs[0])
        device = inputs[0].device
        if group is None:
            value, grads = _run(loss, pairing, names, [_host(t, dtype) for t in inputs])
            ctx.local = None
        else:
            value, grads, ctx.local = _gathered_forward(loss, names, inputs, dtype, group)
        ctx.group = group
        ctx.grads = grads
        ctx.targets = [(t.dtype, t.device) for t in inputs]
        return torch.tensor(value, dtype=dtype, device=device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        scale = grad_output.detach().to(device="cpu", dtype=ctx.grads[0].dtype)
        grads = [g * scale for g in ctx.grads]
        if ctx.group is not None:
            grads = _gathered_backward(grads, ctx.local, ctx.group, ctx.targets[0][1])
        out = [g.to(device=device, dtype=dtype) for g, (dtype, device) in zip(grads, ctx.targets)]
        return (None, None, None, None, *out)


def _gathered_forward(loss, names, inputs, dtype, group):
    """Gathers both views from every rank; this rank's anchors are its own rows."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    z1, z2 = (t.detach().to(dtype) for t in inputs)
    b = _check_batch_sizes(names, z1, z2, group)
    gathered = []
    for z in (z1, z2):
        parts = [torch.empty_like(z) for _ in range(world)]
        dist.all_gather(parts, z.contiguous(), group=group)
        gathered.append(_host(torch.cat(parts), dtype))
    value, grads = _run(loss, "gathered", names, gathered, local_rows=(rank * b, b))
    return value, grads, (rank * b, b)


def _check_batch_sizes(names, z1, z2, group) -> int:
    """Every rank must bring the same batch size: the positives are offset by rank * B."""
    if z1.shape != z2.shape:
        raise ValueError(f"{names[1]}: shape {tuple(z2.shape)} differs from {names[0]}'s {tuple(z1.shape)}")
    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.int64, device=z1.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([z1.shape[0]], dtype=torch.int64, device=z1.device), group=group)
    sizes = [int(s.item()) for s in sizes]
    if len(set(sizes)) != 1:
        raise ValueError(f"{names[0]}: gather=True needs the same batch size on every rank, got {sizes}")
    return sizes[0]


def _gathered_backward(grads, local, group, device):
    """Every rank's loss depends on every rank's rows: sum the gathered gradients over ranks,
    keep this rank's rows. (DDP then averages, which gives the gradient of the mean loss.)"""
    offset, b = local
    both = torch.stack(grads).to(device)
    dist.all_reduce(both, op=dist.ReduceOp.SUM, group=group)
    return [g[offset : offset + b].cpu() for g in both]


def _triton_covers(spec: Dict[str, Any], dtype: torch.dtype) -> bool:
    """The Triton kernels: exponential kernels with p = 2 and one-softmax mixtures of them (so
    sums and Concatenation Sums of those), computed in float32."""
    kernels = _infonce.kernels(spec)
    return dtype == torch.float32 and bool(kernels) and all(k.geometry == _infonce.SQ for k in kernels)


def _sweep(engine: str, device: torch.device, half: bool):
    if engine == "triton":
        from . import _triton  # imported only here: importing triton reads TRITON_INTERPRET

        return _triton.TritonSweep(half_inputs=half)
    from . import _tiled

    return _tiled.TiledSweep(device=device.type)


_last = threading.local()


def last_engine() -> Optional[str]:
    """The engine ("native", "torch" or "triton") of this thread's latest loss call."""
    return getattr(_last, "engine", None)


def kernel_infonce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    queue: Optional[torch.Tensor] = None,
    *,
    preset: Optional[str] = None,
    gamma: Optional[Number] = None,
    tau: Optional[Number] = None,
    p: Optional[Union[Number, str]] = None,
    spec: Optional[Spec] = None,
    pairing: str = "simclr",
    gather: bool = False,
    engine: str = "auto",
) -> torch.Tensor:
    """The Kernel-InfoNCE loss of two views (see :class:`KernelInfoNCE` for every argument;
    :func:`kinfonce.last_engine` says which engine ran)."""
    return KernelInfoNCE(
        preset, gamma=gamma, tau=tau, p=p, spec=spec, pairing=pairing, gather=gather, engine=engine
    )(z1, z2, queue)


class KernelInfoNCE(torch.nn.Module):
    r"""Kernel-InfoNCE loss (Tan et al., ICLR 2024), exact, with analytic gradients.

    For anchors i with positive pos(i) and candidates D(i)::

        L = mean_i  -ln( K(z_i, z_pos(i)) / sum_{j in D(i)} K(z_i, z_j) ),
        K(x, y) = exp(-||x - y||_p^gamma / tau)

    computed in log-space (log-sum-exp, the self-pair masked before the power, no eps).
    gamma = 2 on unit vectors is SimCLR's NT-Xent at temperature tau / 2; gamma = 1 the
    Laplacian kernel.

    The loss, exactly one of:
        preset: ``"gaussian"``, ``"laplacian"``, ``"exp-0.5"``, ``"simple-sum"``,
            ``"sum-of-losses"`` or ``"concat-sum"`` (``kinfonce.PRESETS``).
        gamma, tau, p: one exponential kernel; gamma in (0, 2], tau > 0, p in {1, 2, inf}
            (default 2).
        spec: any loss of kinfonce-loss as a dict (or JSON string): kernel mixtures (the
            paper's Simple Sum), weighted sums of losses, Concatenation Sum, arc-cosine
            kernels, the spectral contrastive loss. See docs/python.md.

    pairing:
        ``"simclr"``: z1, z2 (B x d); the 2B rows of [z1; z2] are the anchors, each anchor's
            positive is its other view, its candidates the other 2B - 1 rows.
        ``"moco"``: z1 = queries q (B x d), z2 = keys k (B x d), queue (K x d):
            -ln( K(q, k) / sum_m K(q, queue_m) ), the positive not in the denominator.
        ``"clip"``: z1 = a, z2 = b (B x d); a_i's softmax runs over b, b_i's over a; the mean of
            both directions.
    gather: with ``torch.distributed`` initialised, gather both views from every rank (SimCLR
        pairing): this rank's loss is the mean over its own 2B anchors against all 2 B W
        candidates; backward sums the gradients over ranks, so that after DDP averages them
        one step equals the single-process step on the concatenated batch.

    Shapes: z1, z2: (B, d); queue: (K, d); returns a scalar.

    Dtypes: float32 and float64 run in their own precision; float16 and bfloat16 are upcast to
    float32 (the loss is then float32, the gradients come back in the input dtype).

    engine: ``"auto"`` (default): the fused Rust engine for CPU tensors, the Triton kernels for
        CUDA tensors when they cover the loss, else the tiled path; ``"native"`` (CPU tensors
        only), ``"torch"`` (the exact tiled path in torch operations, any device) or
        ``"triton"`` (CUDA, or the CPU under ``TRITON_INTERPRET=1``). ``last_engine`` (and
        :func:`kinfonce.last_engine`) says which one ran. See docs/python.md.

    Devices: every engine computes where the tensors live, in memory linear in the batch; none
    copies CUDA tensors to the host.
    """

    def __init__(
        self,
        preset: Optional[str] = None,
        *,
        gamma: Optional[Number] = None,
        tau: Optional[Number] = None,
        p: Optional[Union[Number, str]] = None,
        spec: Optional[Spec] = None,
        pairing: str = "simclr",
        gather: bool = False,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        if engine not in ENGINES:
            raise ValueError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing: {pairing!r} is not one of {', '.join(PAIRINGS)}")
        if not isinstance(gather, bool):
            raise TypeError(f"gather: expected a bool, got {type(gather).__name__}")
        if gather and pairing != "simclr":
            raise ValueError(
                f"gather: gather=True is for the SimCLR pairing (got pairing={pairing!r}); "
                "MoCo's negatives already come from its queue"
            )
        self._args = (preset, gamma, tau, p, spec)
        self.loss = _describe(*self._args)
        self.pairing = pairing
        self.gather = gather
        self.engine = engine
        self.last_engine: Optional[str] = None

    # The native description does not pickle; copies (deepcopy, torch.save) rebuild it.
    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        del state["loss"]
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self.loss = _describe(*self._args)

    def spec(self, dim: int) -> Dict[str, Any]:
        """The loss as kinfonce-loss's JSON form for embeddings of width ``dim`` (what a preset
        means; ``concat-sum`` splits at ``dim // 2``)."""
        return json.loads(self.loss.spec_json(dim))

    def extra_repr(self) -> str:
        return f"{self.loss!r}, pairing={self.pairing!r}, gather={self.gather}, engine={self.engine!r}"

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, queue: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if self.pairing == "moco":
            if queue is None:
                raise ValueError("queue: the MoCo pairing needs a queue tensor (K x d)")
            names, inputs = ("z1", "z2", "queue"), (z1, z2, queue)
        else:
            if queue is not None:
                raise ValueError(f"queue: only the MoCo pairing takes a queue (pairing={self.pairing!r})")
            names, inputs = ("z1", "z2"), (z1, z2)
        group = None
        if self.gather:
            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError(
                    "gather: gather=True needs an initialised torch.distributed process group "
                    "(torch.distributed.init_process_group)"
                )
            group = dist.group.WORLD
        dtype = _check_inputs(names, inputs)
        spec = self.spec(inputs[0].shape[1])
        engine = _engine.choose_engine(
            self.engine,
            inputs[0].device.type,
            _triton_covers(spec, dtype),
            _engine.triton_available(),
            _engine.triton_interpreted(),
        )
        self.last_engine = _last.engine = engine
        if engine == "native":
            return _KernelInfoNCEFunction.apply(self.loss, self.pairing, names, group, *inputs)
        _check_values(names, inputs)
        # float16 and bfloat16 are computed in float32 (autograd casts the gradients back).
        half = inputs[0].dtype in (torch.float16, torch.bfloat16)
        inputs = [t.to(dtype) for t in inputs]
        sweep = _sweep(engine, inputs[0].device, half)
        if group is None:
            return _infonce.loss(sweep, spec, self.pairing, inputs)
        _check_batch_sizes(names, inputs[0], inputs[1], group)
        rank, b = dist.get_rank(group), inputs[0].shape[0]
        gathered = [_infonce.all_gather(t, group) for t in inputs]
        return _infonce.loss(sweep, spec, "gathered", gathered, local=(rank * b, b))
