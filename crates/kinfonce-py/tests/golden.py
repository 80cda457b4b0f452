"""The golden vectors through the public API: each case's (kind, params) as KernelInfoNCE
arguments, and the golden file's rule (every value within tol x the case's largest magnitude).

Also a script, for a GPU machine (scripts/cuda_check.sh): every case through the given engines,
dtypes and device, one JSON line per (engine, dtype) and a last line with all of them:

    python golden.py CASES.json [--device cuda] [--engines torch triton] [--dtypes f64 f32]
"""

import argparse
import json

import torch

import kinfonce

TOL = {torch.float64: 1e-9, torch.float32: 1e-4}


def _exp(gamma, tau, p=2.0):
    return {"type": "exp", "gamma": gamma, "tau": tau, "p": {1.0: "L1", 2.0: "L2", "inf": "Inf"}[p]}


def module_for(case, **kwargs):
    """The golden file's (kind, params) as KernelInfoNCE arguments (``kwargs``: engine, ...)."""
    kind, q = case["kind"], case["params"]
    if kind == "exp":
        return kinfonce.KernelInfoNCE(gamma=q["gamma"], tau=q["tau"], p=q["p"], **kwargs)
    if kind in ("moco", "clip"):
        return kinfonce.KernelInfoNCE(gamma=q["gamma"], tau=q["tau"], pairing=kind, **kwargs)
    if kind == "loss_sum":
        lam = q["lambda"]
        parts = [[lam, _exp(q["gamma"], q["tau"])], [1 - lam, _exp(q["gamma2"], q["tau"])]]
        return kinfonce.KernelInfoNCE(spec={"loss": "sum", "parts": parts}, **kwargs)
    if kind == "loss_concat":
        spec = {
            "loss": "concat",
            "split": q["split"],
            "lambda": q["lambda"],
            "first": _exp(q["gamma"], q["tau"]),
            "second": _exp(q["gamma2"], q["tau"]),
        }
        return kinfonce.KernelInfoNCE(spec=spec, **kwargs)
    if kind == "kernel_mixture":
        comps = [{"weight": w, "kernel": _exp(g, t)} for w, g, t in q["components"]]
        spec = {"loss": "info_nce", "kernel": {"type": "mixture", "components": comps}}
        return kinfonce.KernelInfoNCE(spec=spec, **kwargs)
    if kind == "acos":
        kernel = {"type": "arc_cos", "order": q["order"], "tau": q["tau"]}
        return kinfonce.KernelInfoNCE(spec={"loss": "info_nce", "kernel": kernel}, **kwargs)
    if kind == "spectral":
        return kinfonce.KernelInfoNCE(spec={"loss": "spectral"}, **kwargs)
    raise AssertionError(f"unknown golden kind {kind}")


def triton_covers(case):
    """The cases the Triton kernels compute: exponential kernels with p = 2 and their mixtures."""
    return case["kind"] not in ("acos", "spectral") and case["params"].get("p", 2.0) == 2.0


def run_case(case, dtype, device="cpu", **kwargs):
    """(relative error by the golden rule, the engine that ran) of one case."""
    inputs = [torch.tensor(m, dtype=dtype, device=device, requires_grad=True) for m in case["inputs"]]
    module = module_for(case, **kwargs)
    loss = module(*inputs)
    loss.backward()
    expected = [torch.tensor(g, dtype=torch.float64) for g in case["grads"]]
    scale = max([abs(case["loss"])] + [g.abs().max().item() for g in expected])
    errors = [abs(loss.item() - case["loss"])]
    errors += [(t.grad.double().cpu() - g).abs().max().item() for t, g in zip(inputs, expected)]
    return max(errors) / scale, module.last_engine


def main():
    ap = argparse.ArgumentParser(description="the golden cases through kinfonce's engines")
    ap.add_argument("cases")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--engines", nargs="+", default=["torch", "triton"])
    ap.add_argument("--dtypes", nargs="+", default=["f64", "f32"])
    args = ap.parse_args()
    with open(args.cases) as f:
        cases = json.load(f)["cases"]
    dtypes = {"f64": torch.float64, "f32": torch.float32}
    results = []
    for engine in args.engines:
        for name in args.dtypes:
            dtype = dtypes[name]
            if engine == "triton" and dtype != torch.float32:
                continue
            chosen = [c for c in cases if engine != "triton" or triton_covers(c)]
            worst, failed = 0.0, []
            for case in chosen:
                err, ran = run_case(case, dtype, args.device, engine=engine)
                worst = max(worst, err)
                if not err <= TOL[dtype] or ran != engine:
                    failed.append(case["name"])
            row = {"engine": engine, "dtype": name, "device": args.device, "checked": len(chosen),
                   "failed": failed, "worst_relative_error": worst, "tolerance": TOL[dtype],
                   "pass": not failed and bool(chosen)}
            print(json.dumps(row), flush=True)
            results.append(row)
    print(json.dumps({"python_golden": results, "pass": all(r["pass"] for r in results)}))


if __name__ == "__main__":
    main()
