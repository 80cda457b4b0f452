"""The module against a plain PyTorch reimplementation (autograd) for every kernel, p-norm,
mixture, preset and pairing; gradcheck; invariants; the dtype rule."""

import copy
import io
import math

import pytest
import torch

import kinfonce
from reference import reference_loss

EXP = [(2.0, 0.4, 2), (1.0, 0.2, 2), (0.5, 0.15, 2), (1.5, 0.3, 2), (1.0, 0.5, 1), (0.7, 0.5, 1), (1.0, 0.5, "inf"), (2.0, 1.0, float("inf"))]
SPECS = [
    {"loss": "info_nce", "kernel": {"type": "mixture", "components": [
        {"weight": 0.3, "kernel": {"gamma": 1.0, "tau": 0.2, "p": "L1"}},
        {"weight": 0.7, "kernel": {"gamma": 0.5, "tau": 0.4, "p": "L1"}}]}},
    {"loss": "info_nce", "kernel": {"type": "arc_cos", "order": 1, "tau": 0.5}},
    {"loss": "info_nce", "kernel": {"type": "arc_cos", "order": 3, "tau": 0.3}},
    {"loss": "sum", "parts": [[0.2, {"type": "exp", "gamma": 1.0, "tau": 0.3}], [0.8, {"type": "exp", "gamma": 2.0, "tau": 0.5, "p": "Inf"}]]},
]


def modules(pairing):
    for gamma, tau, p in EXP:
        yield kinfonce.KernelInfoNCE(gamma=gamma, tau=tau, p=p, pairing=pairing)
    for spec in SPECS:
        yield kinfonce.KernelInfoNCE(spec=spec, pairing=pairing)
    for preset in kinfonce.PRESETS:
        if pairing == "simclr" or preset != "concat-sum":
            yield kinfonce.KernelInfoNCE(preset, pairing=pairing)


def make_inputs(pairing, b=6, d=8, k=10, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    z2 = torch.nn.functional.normalize(z1 + 0.3 * torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    inputs = [z1, z2]
    if pairing == "moco":
        inputs.append(torch.nn.functional.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1))
    return [t.to(dtype) for t in inputs]


def value_and_grads(fn, inputs):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    loss = fn(*leaves)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("pairing", ["simclr", "moco", "clip"])
def test_agrees_with_a_plain_pytorch_reference(pairing):
    inputs = make_inputs(pairing)
    for module in modules(pairing):
        spec = module.spec(inputs[0].shape[1])
        got, got_grads = value_and_grads(module, inputs)
        want, want_grads = value_and_grads(lambda *z: reference_loss(spec, pairing, list(z)), inputs)
        scale = max([want.abs().item()] + [g.abs().max().item() for g in want_grads])
        assert abs(got.item() - want.item()) <= 1e-10 * scale, (spec, got.item(), want.item())
        for g, w in zip(got_grads, want_grads):
            assert (g - w).abs().max().item() <= 1e-9 * scale, (spec, pairing)


def test_spectral_loss_agrees_with_the_reference():
    inputs = make_inputs("simclr")
    module = kinfonce.KernelInfoNCE(spec={"loss": "spectral"})
    got, got_grads = value_and_grads(module, inputs)
    want, want_grads = value_and_grads(lambda *z: reference_loss({"loss": "spectral"}, "simclr", list(z)), inputs)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pairing", ["simclr", "moco", "clip"])
def test_gradcheck_in_float64(pairing):
    inputs = [t.clone().requires_grad_(True) for t in make_inputs(pairing, b=4, d=5, k=6)]
    for module in [
        kinfonce.KernelInfoNCE(gamma=1.0, tau=0.3, pairing=pairing),
        kinfonce.KernelInfoNCE(gamma=0.5, tau=0.2, p=1, pairing=pairing),
        kinfonce.KernelInfoNCE("simple-sum", pairing=pairing),
    ]:
        assert torch.autograd.gradcheck(module, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_collapsed_embeddings_give_ln_of_the_candidate_count():
    """Every kernel with K(x, x) = 1 gives ln(2B - 1) for SimCLR, ln K for MoCo, ln B for CLIP."""
    b, d, k = 5, 4, 7
    z = torch.full((b, d), 0.5, dtype=torch.float64)
    queue = torch.full((k, d), 0.5, dtype=torch.float64)
    for preset in ["gaussian", "laplacian", "exp-0.5", "simple-sum", "sum-of-losses", "concat-sum"]:
        assert kinfonce.kernel_infonce(z, z, preset=preset).item() == pytest.approx(math.log(2 * b - 1), abs=1e-12)
    assert kinfonce.kernel_infonce(z, z, queue, gamma=1, tau=0.2, pairing="moco").item() == pytest.approx(math.log(k), abs=1e-12)
    assert kinfonce.kernel_infonce(z, z, gamma=1, tau=0.2, pairing="clip").item() == pytest.approx(math.log(b), abs=1e-12)


def test_the_loss_is_exact_where_an_eps_clamp_is_not():
    """Far-apart views at a small tau: every kernel value underflows, the log-space value does not."""
    z1, z2 = make_inputs("simclr", b=8, d=16)
    loss = kinfonce.kernel_infonce(z1 * 3, -z2 * 3, gamma=1.0, tau=0.01)
    want = reference_loss(kinfonce.KernelInfoNCE(gamma=1.0, tau=0.01).spec(16), "simclr", [z1 * 3, -z2 * 3])
    assert torch.isfinite(loss) and loss.item() == pytest.approx(want.item(), rel=1e-12)
    assert loss.item() > 100


def test_float32_matches_float64():
    inputs = make_inputs("simclr", b=32, d=16)
    module = kinfonce.KernelInfoNCE("laplacian")
    v64, g64 = value_and_grads(module, inputs)
    v32, g32 = value_and_grads(module, [t.float() for t in inputs])
    assert v32.dtype == torch.float32 and g32[0].dtype == torch.float32
    scale = max(v64.abs().item(), max(g.abs().max().item() for g in g64))
    assert abs(v32.item() - v64.item()) <= 1e-4 * scale
    for a, b in zip(g32, g64):
        assert (a.double() - b).abs().max().item() <= 1e-4 * scale


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_upcast_to_float32(dtype):
    """The documented rule: computed in float32 from the half values; a float32 loss, gradients
    in the input's dtype."""
    inputs = [t.to(dtype) for t in make_inputs("simclr")]
    module = kinfonce.KernelInfoNCE("gaussian")
    loss, grads = value_and_grads(module, inputs)
    want, want_grads = value_and_grads(module, [t.float() for t in inputs])
    assert loss.dtype == torch.float32 and loss.item() == want.item()
    for g, w in zip(grads, want_grads):
        assert g.dtype == dtype and torch.equal(g, w.to(dtype))


def test_backward_scales_the_gradient_and_leaves_inputs_untouched():
    z1, z2 = make_inputs("simclr")
    before = z1.clone()
    a = z1.clone().requires_grad_(True)
    (3.0 * kinfonce.kernel_infonce(a, z2, preset="laplacian")).backward()
    b = z1.clone().requires_grad_(True)
    kinfonce.kernel_infonce(b, z2, preset="laplacian").backward()
    assert torch.allclose(a.grad, 3.0 * b.grad, rtol=1e-14, atol=0)
    assert torch.equal(z1, before)


def test_non_contiguous_inputs_give_the_same_loss():
    z1, z2 = make_inputs("simclr", d=8)
    wide = torch.cat([z1, z2], 1)
    assert kinfonce.kernel_infonce(wide[:, :8], wide[:, 8:], preset="gaussian").item() == (
        kinfonce.kernel_infonce(z1, z2, preset="gaussian").item()
    )


def test_a_copied_or_saved_module_computes_the_same_loss():
    z1, z2 = make_inputs("simclr", d=8)
    module = kinfonce.KernelInfoNCE("concat-sum")
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    for other in (copy.deepcopy(module), torch.load(buffer, weights_only=False)):
        assert repr(other) == repr(module)
        assert other(z1, z2).item() == module(z1, z2).item()
