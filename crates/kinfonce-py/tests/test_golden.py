"""Every golden case (PyTorch autograd in float64, exact mathematics) through the public API, in
float64 and float32, with the golden file's rule: every value within tol x the case's largest
magnitude, tol 1e-9 in f64 and 1e-4 in f32."""

import pytest
import torch

import kinfonce


def _exp(gamma, tau, p=2.0):
    return {"type": "exp", "gamma": gamma, "tau": tau, "p": {1.0: "L1", 2.0: "L2", "inf": "Inf"}[p]}


def module_for(case):
    """The golden file's (kind, params) as KernelInfoNCE arguments."""
    kind, q = case["kind"], case["params"]
    if kind == "exp":
        return kinfonce.KernelInfoNCE(gamma=q["gamma"], tau=q["tau"], p=q["p"])
    if kind in ("moco", "clip"):
        return kinfonce.KernelInfoNCE(gamma=q["gamma"], tau=q["tau"], pairing=kind)
    if kind == "loss_sum":
        lam = q["lambda"]
        parts = [[lam, _exp(q["gamma"], q["tau"])], [1 - lam, _exp(q["gamma2"], q["tau"])]]
        return kinfonce.KernelInfoNCE(spec={"loss": "sum", "parts": parts})
    if kind == "loss_concat":
        spec = {
            "loss": "concat",
            "split": q["split"],
            "lambda": q["lambda"],
            "first": _exp(q["gamma"], q["tau"]),
            "second": _exp(q["gamma2"], q["tau"]),
        }
        return kinfonce.KernelInfoNCE(spec=spec)
    if kind == "kernel_mixture":
        comps = [{"weight": w, "kernel": _exp(g, t)} for w, g, t in q["components"]]
        return kinfonce.KernelInfoNCE(spec={"loss": "info_nce", "kernel": {"type": "mixture", "components": comps}})
    if kind == "acos":
        kernel = {"type": "arc_cos", "order": q["order"], "tau": q["tau"]}
        return kinfonce.KernelInfoNCE(spec={"loss": "info_nce", "kernel": kernel})
    if kind == "spectral":
        return kinfonce.KernelInfoNCE(spec={"loss": "spectral"})
    raise AssertionError(f"unknown golden kind {kind}")


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_every_golden_case_matches(golden_cases, dtype, tol):
    assert len(golden_cases) >= 20
    for case in golden_cases:
        inputs = [torch.tensor(m, dtype=dtype, requires_grad=True) for m in case["inputs"]]
        loss = module_for(case)(*inputs)
        loss.backward()
        expected = [torch.tensor(g, dtype=torch.float64) for g in case["grads"]]
        scale = max([abs(case["loss"])] + [g.abs().max().item() for g in expected])
        assert abs(loss.item() - case["loss"]) <= tol * scale, (case["name"], loss.item(), case["loss"])
        for i, (t, g) in enumerate(zip(inputs, expected)):
            err = (t.grad.double() - g).abs().max().item()
            assert err <= tol * scale, (case["name"], f"grad {i}", err, scale)
