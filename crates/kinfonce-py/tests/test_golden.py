"""Every golden case (PyTorch autograd in float64, exact mathematics) through the public API, in
float64 and float32, with the golden file's rule: every value within tol x the case's largest
magnitude, tol 1e-9 in f64 and 1e-4 in f32. The native engine here; the tiled and Triton
engines in test_engines.py and test_triton.py."""

import pytest
import torch

from golden import TOL, run_case


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_golden_case_matches(golden_cases, dtype):
    assert len(golden_cases) >= 20
    for case in golden_cases:
        err, engine = run_case(case, dtype)
        assert engine == "native"
        assert err <= TOL[dtype], (case["name"], err)
