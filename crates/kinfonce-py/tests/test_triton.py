"""The Triton kernels (on a machine without a GPU: in Triton's interpreter, TRITON_INTERPRET=1,
set by conftest.py): the golden vectors in float32 and the native engine on inputs whose sizes
are not multiples of the tiles, values and gradients, every pairing."""

import math
import os
import subprocess
import sys

import pytest
import torch

import kinfonce
from conftest import DEVICE, TRITON_RUNS
from golden import TOL, run_case, triton_covers
from kinfonce import _infonce
from test_engines import close, edge_cases
from test_loss import make_inputs, value_and_grads

pytestmark = [
    pytest.mark.skipif(not TRITON_RUNS, reason="Triton runs here neither on a GPU nor in its interpreter"),
    # The interpreter's own int() of one-element arrays (numpy 1.25 deprecated it).
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim:DeprecationWarning"),
]

# The smallest tiles tl.dot takes: with d = 21 the dot products take two chunks of 16, the
# gradients two chunks of d, and 2B = 38 rows three row blocks.
SMALL = {"rows": 16, "cols": 16, "k": 16, "d_out": 16}

LOSSES = [
    {"gamma": 2.0, "tau": 0.4},
    {"gamma": 1.0, "tau": 0.2},
    {"gamma": 0.7, "tau": 0.3},
    {"preset": "simple-sum"},
    {"preset": "sum-of-losses"},
]


@pytest.fixture
def small_tiles(monkeypatch):
    from kinfonce import _triton

    monkeypatch.setattr(_triton, "BLOCKS", SMALL)
    return _triton


def test_every_covered_golden_case_matches_in_float32(golden_cases):
    covered = [c for c in golden_cases if triton_covers(c)]
    assert len(covered) >= 15
    for case in covered:
        err, engine = run_case(case, torch.float32, DEVICE, engine="triton")
        assert engine == "triton"
        assert err <= TOL[torch.float32], (case["name"], err)


@pytest.mark.parametrize("pairing", ["simclr", "moco", "clip"])
def test_the_kernels_equal_the_native_engine(pairing, small_tiles):
    inputs = [t.float() for t in make_inputs(pairing, b=19, d=21, k=23)]
    losses = LOSSES + ([{"preset": "concat-sum"}] if pairing == "simclr" else [])
    for kwargs in losses:
        native = value_and_grads(kinfonce.KernelInfoNCE(pairing=pairing, **kwargs), inputs)
        module = kinfonce.KernelInfoNCE(pairing=pairing, engine="triton", **kwargs)
        fused = value_and_grads(module, [t.to(DEVICE) for t in inputs])
        assert module.last_engine == "triton"
        ok, err = close(fused, native, 1e-5)
        assert ok, (kwargs, err)


def test_the_gathered_pairing_equals_the_native_engine(small_tiles):
    z1, z2 = [t.float() for t in make_inputs("simclr", b=10, d=18)]
    module = kinfonce.KernelInfoNCE("laplacian")
    spec = module.spec(18)
    offset, count = 4, 3
    grads = [torch.empty_like(z1), torch.empty_like(z2)]
    value = module.loss.compute("gathered", [z1.numpy(), z2.numpy()], [g.numpy() for g in grads], ["z1", "z2"],
                                (offset, count))
    leaves = [t.clone().to(DEVICE).requires_grad_(True) for t in (z1, z2)]
    loss = _infonce.loss(small_tiles.TritonSweep(), spec, "gathered", leaves, local=(offset, count))
    loss.backward()
    ok, err = close((loss.detach(), [t.grad for t in leaves]), (torch.tensor(value, dtype=torch.float64), grads), 1e-5)
    assert ok, err


def test_edge_cases_are_finite_and_equal_the_native_engine(small_tiles):
    for name, inputs, kwargs in edge_cases(b=9, d=17):
        inputs = [t.float() for t in inputs]
        native = value_and_grads(kinfonce.KernelInfoNCE(**kwargs), inputs)
        fused = value_and_grads(kinfonce.KernelInfoNCE(engine="triton", **kwargs), [t.to(DEVICE) for t in inputs])
        assert math.isfinite(fused[0].item()) and all(torch.isfinite(g).all() for g in fused[1]), name
        ok, err = close(fused, native, TOL[torch.float32])
        assert ok, (name, err)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32(dtype, small_tiles):
    """The package's rule: float32 from the half values, the gradients in the input's dtype."""
    inputs = [t.to(dtype) for t in make_inputs("simclr", b=9, d=17)]
    loss, grads = value_and_grads(kinfonce.KernelInfoNCE("simple-sum", engine="triton"), [t.to(DEVICE) for t in inputs])
    want, want_grads = value_and_grads(kinfonce.KernelInfoNCE("simple-sum"), [t.float() for t in inputs])
    assert loss.dtype == torch.float32 and grads[0].dtype == dtype
    ok, err = close((loss, [g.float() for g in grads]), (want, want_grads), 1e-2 if dtype == torch.bfloat16 else 1e-3)
    assert ok, err


# Compiles the kernels to a Hopper binary (Triton's whole pipeline, ptxas included): a GPU build
# fails on what the interpreter lets pass (types, constexprs, layouts), and needs no GPU.
COMPILE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kinfonce import _triton as T

ptrs = {name: "*fp32" for name in ("a_ptr", "c_ptr", "a_sq_ptr", "c_sq_ptr", "kp_ptr")}
ptrs.update(pos_ptr="*i32", excl_ptr="*i32", n="i32", m="i32", d="i32")
blocks = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64}
grads = dict(blocks, BLOCK_D=128, DOT_W="ieee")
for kernel, extra, consts in [
    (T._negatives_kernel, ("max_ptr", "sum_ptr"), dict(blocks, PARTS=1, DOT="ieee")),
    (T._anchor_grad_kernel, ("lse_ptr", "out_ptr"), dict(grads, PARTS=2, DOT="tf32")),
    (T._candidate_grad_kernel, ("lse_ptr", "out_ptr"), dict(grads, PARTS=1, DOT="ieee")),
]:
    signature = dict(ptrs, **{name: "*fp32" for name in extra}, **{name: "constexpr" for name in consts})
    triton.compile(ASTSource(kernel, signature, constexprs=consts), target=GPUTarget("cuda", 90, 32))
print("compiled")
"""


def test_the_kernels_compile_for_a_gpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "compiled" in out.stdout, out.stderr[-3000:]
