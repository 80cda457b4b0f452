"""The engine rule (auto, native, torch, triton) and the exact tiled path in torch operations:
the golden vectors, the native engine on inputs whose sizes are not multiples of the tiles,
gradcheck, the edge cases, the errors."""

import itertools
import math

import pytest
import torch

import kinfonce
from conftest import DEVICE, TRITON_RUNS
from golden import TOL, run_case
from kinfonce import _engine, _infonce, _tiled
from test_loss import make_inputs, value_and_grads

# Small tiles, so that these sizes cross tile edges in both directions.
SMALL = (5, 7)


def small_tiles(monkeypatch, block=SMALL):
    monkeypatch.setattr(_tiled, "BLOCK", {"cpu": block, "other": block})

EXP = [(2.0, 0.4, 2), (1.0, 0.2, 2), (0.5, 0.15, 2), (1.5, 0.3, 2), (0.7, 0.5, 1), (1.0, 0.5, "inf")]
SPECS = [
    {"loss": "info_nce", "kernel": {"type": "mixture", "components": [
        {"weight": 0.3, "kernel": {"gamma": 1.0, "tau": 0.2, "p": "L1"}},
        {"weight": 0.7, "kernel": {"gamma": 0.5, "tau": 0.4, "p": "L1"}}]}},
    {"loss": "info_nce", "kernel": {"type": "arc_cos", "order": 2, "tau": 0.5}},
    {"loss": "sum", "parts": [[0.2, {"type": "exp", "gamma": 1.0, "tau": 0.3}],
                              [0.8, {"type": "exp", "gamma": 2.0, "tau": 0.5, "p": "Inf"}]]},
]


def losses(pairing):
    """KernelInfoNCE arguments: every kind of kernel, the presets (concat-sum: SimCLR only)."""
    for gamma, tau, p in EXP:
        yield {"gamma": gamma, "tau": tau, "p": p}
    for spec in SPECS:
        yield {"spec": spec}
    for preset in kinfonce.PRESETS:
        if pairing == "simclr" or preset != "concat-sum":
            yield {"preset": preset}


def close(got, want, tol):
    """The golden rule: every value within tol x the largest magnitude of `want`."""
    (v, grads), (w, wgrads) = got, want
    scale = max([w.abs().item()] + [g.abs().max().item() for g in wgrads])
    err = max([abs(v.item() - w.item())] + [(g.cpu().double() - h.double()).abs().max().item() for g, h in zip(grads, wgrads)])
    return err <= tol * scale, err / scale


# --- the dispatch rule -------------------------------------------------------------------------


def test_the_engine_rule_over_every_combination():
    devices = ["cpu", "cuda", "mps"]
    flags = [False, True]
    for asked, device, covers, available, interpreted in itertools.product(_engine.ENGINES, devices, flags, flags, flags):
        args = (asked, device, covers, available, interpreted)
        triton_runs = available and covers and (device == "cuda" or (device == "cpu" and interpreted))
        try:
            got = _engine.choose_engine(*args)
        except ValueError as e:
            message = str(e)
            assert asked in ("native", "triton"), args
            assert f"'{asked}'" in message, (args, message)
            if asked == "native" or (available and not (device == "cuda" or interpreted)):
                assert device in message, (args, message)  # names both the engine and the device
            assert not (asked == "triton" and triton_runs), args
            continue
        assert got in ("native", "torch", "triton"), args
        assert got != "native" or device == "cpu", args  # the native engine only for CPU tensors
        if asked == "auto":
            want = "native" if device == "cpu" else ("triton" if device == "cuda" and available and covers else "torch")
            assert got == want, args
        else:
            assert got == asked, args
            assert asked != "triton" or triton_runs, args
    with pytest.raises(ValueError, match="engine: 'cuda' is not one of auto, native, torch, triton"):
        _engine.choose_engine("cuda", "cpu", True, True, True)


def test_the_engine_that_ran_is_readable_after_the_call(monkeypatch):
    z1, z2 = make_inputs("simclr")
    module = kinfonce.KernelInfoNCE("laplacian")
    assert module.last_engine is None
    module(z1, z2)
    assert module.last_engine == "native" == kinfonce.last_engine()
    kinfonce.kernel_infonce(z1, z2, preset="laplacian", engine="torch")
    assert kinfonce.last_engine() == "torch"
    assert "engine='auto'" in repr(module)
    # Tensors on another device never reach the native engine: auto takes the tiled path there.
    meta = [t.to("meta") for t in (z1, z2)]
    with pytest.raises(ValueError, match="engine: 'native' runs on CPU tensors, the inputs are on meta"):
        kinfonce.KernelInfoNCE("laplacian", engine="native")(*meta)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="engine: 'triton' runs on cuda tensors .* the inputs are on cpu"):
        kinfonce.kernel_infonce(z1, z2, preset="laplacian", engine="triton")
    with pytest.raises(ValueError, match="engine: 'gpu' is not one of"):
        kinfonce.KernelInfoNCE("laplacian", engine="gpu")


@pytest.mark.skipif(not TRITON_RUNS, reason="Triton runs here neither on a GPU nor in its interpreter")
def test_triton_refuses_what_its_kernels_do_not_cover():
    z1, z2 = (t.to(DEVICE) for t in make_inputs("simclr"))
    for kwargs in ({"gamma": 1.0, "tau": 0.5, "p": 1}, {"spec": {"loss": "spectral"}}, {"preset": "laplacian"}):
        dtype = torch.float64 if "preset" in kwargs else torch.float32
        with pytest.raises(ValueError, match="engine: 'triton' covers exponential kernels with p = 2"):
            kinfonce.kernel_infonce(z1.to(dtype), z2.to(dtype), engine="triton", **kwargs)


# --- the tiled path ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_golden_case_matches_on_the_tiled_path(golden_cases, dtype, monkeypatch):
    small_tiles(monkeypatch)
    for case in golden_cases:
        err, engine = run_case(case, dtype, DEVICE, engine="torch")
        assert engine == "torch"
        assert err <= TOL[dtype], (case["name"], err)


@pytest.mark.parametrize("pairing", ["simclr", "moco", "clip"])
def test_the_tiled_path_equals_the_native_engine(pairing, monkeypatch):
    """Values and gradients in f64, with 2B = 22 rows, d = 9 and a queue of 13 in 5 x 7 tiles."""
    small_tiles(monkeypatch)
    inputs = make_inputs(pairing, b=11, d=9, k=13)
    for kwargs in losses(pairing):
        native = value_and_grads(kinfonce.KernelInfoNCE(pairing=pairing, engine="native", **kwargs), inputs)
        tiled = value_and_grads(kinfonce.KernelInfoNCE(pairing=pairing, engine="torch", **kwargs),
                                [t.to(DEVICE) for t in inputs])
        ok, err = close(tiled, native, 1e-10)
        assert ok, (kwargs, err)


def test_the_gathered_pairing_equals_the_native_engine():
    """One rank's slice of a gathered batch (the anchors offset..offset + count of both views)."""
    z1, z2 = make_inputs("simclr", b=9, d=6)
    module = kinfonce.KernelInfoNCE("simple-sum")
    spec = module.spec(6)
    for offset, count in [(0, 3), (3, 3), (6, 3)]:
        grads = [torch.empty_like(z1), torch.empty_like(z2)]
        value = module.loss.compute("gathered", [z1.numpy(), z2.numpy()], [g.numpy() for g in grads],
                                    ["z1", "z2"], (offset, count))
        leaves = [t.clone().requires_grad_(True) for t in (z1, z2)]
        loss = _infonce.loss(_tiled.TiledSweep(SMALL), spec, "gathered", leaves, local=(offset, count))
        loss.backward()
        ok, err = close((loss.detach(), [t.grad for t in leaves]), (torch.tensor(value, dtype=torch.float64), grads), 1e-10)
        assert ok, (offset, err)


def test_the_spectral_loss_on_the_tiled_path_equals_the_native_engine():
    inputs = make_inputs("simclr", b=7, d=5)
    native = value_and_grads(kinfonce.KernelInfoNCE(spec={"loss": "spectral"}), inputs)
    torch_ = value_and_grads(kinfonce.KernelInfoNCE(spec={"loss": "spectral"}, engine="torch"), inputs)
    assert close(torch_, native, 1e-12)[0]
    with pytest.raises(ValueError, match="at least 2 pairs"):
        kinfonce.kernel_infonce(inputs[0][:1], inputs[1][:1], spec={"loss": "spectral"}, engine="torch")


@pytest.mark.parametrize("pairing", ["simclr", "moco", "clip"])
def test_gradcheck_on_the_tiled_path(pairing, monkeypatch):
    small_tiles(monkeypatch, (3, 4))
    inputs = [t.clone().to(DEVICE).requires_grad_(True) for t in make_inputs(pairing, b=4, d=5, k=6)]
    for kwargs in [{"gamma": 1.0, "tau": 0.3}, {"gamma": 0.5, "tau": 0.2, "p": 1}, {"preset": "simple-sum"},
                   {"spec": {"loss": "info_nce", "kernel": {"type": "arc_cos", "order": 3, "tau": 0.3}}}]:
        module = kinfonce.KernelInfoNCE(pairing=pairing, engine="torch", **kwargs)
        assert torch.autograd.gradcheck(module, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-5), kwargs


def edge_cases(b=6, d=7):
    """Identical views, tau 0.01, huge norms: (name, inputs, KernelInfoNCE arguments)."""
    z1, z2 = make_inputs("simclr", b=b, d=d)
    yield "identical views", (z1, z1.clone()), {"gamma": 0.5, "tau": 0.1}
    yield "tau 0.01", (z1, z2), {"gamma": 1.0, "tau": 0.01}
    yield "far apart, tau 0.01", (3 * z1, -3 * z2), {"gamma": 2.0, "tau": 0.01}
    yield "huge norms", (1e3 * z1, 1e3 * z2), {"gamma": 1.0, "tau": 0.3}
    yield "identical mixture", (z1, z1.clone()), {"preset": "simple-sum"}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_edge_cases_are_finite_and_equal_the_native_engine(dtype, monkeypatch):
    small_tiles(monkeypatch)
    for name, inputs, kwargs in edge_cases():
        inputs = [t.to(dtype) for t in inputs]
        native = value_and_grads(kinfonce.KernelInfoNCE(**kwargs), inputs)
        tiled = value_and_grads(kinfonce.KernelInfoNCE(engine="torch", **kwargs), [t.to(DEVICE) for t in inputs])
        assert math.isfinite(tiled[0].item()) and all(torch.isfinite(g).all() for g in tiled[1]), name
        ok, err = close(tiled, native, TOL[dtype])
        assert ok, (name, err)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_follow_the_same_rule_on_the_tiled_path(dtype):
    inputs = [t.to(dtype).to(DEVICE) for t in make_inputs("simclr")]
    loss, grads = value_and_grads(kinfonce.KernelInfoNCE("gaussian", engine="torch"), inputs)
    want, want_grads = value_and_grads(kinfonce.KernelInfoNCE("gaussian", engine="torch"), [t.float() for t in inputs])
    assert loss.dtype == torch.float32 and loss.item() == want.item()
    for g, w in zip(grads, want_grads):
        assert g.dtype == dtype and torch.equal(g, w.to(dtype))


def test_bad_inputs_get_the_native_engines_messages_on_the_tiled_path():
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    loss = kinfonce.KernelInfoNCE("laplacian", engine="torch")
    cases = [
        ((z1, torch.randn(4, 5)), "z2 has 5 columns, z1 has 3"),
        ((z1, torch.randn(5, 3)), "same number of rows"),
        ((z1[:0], z2[:0]), "z1 is 0 x 3"),
    ]
    for args, words in cases:
        with pytest.raises(ValueError) as info:
            loss(*args)
        assert words in str(info.value), (words, str(info.value))
    for value, word in [(math.nan, "NaN"), (math.inf, "inf"), (-math.inf, "-inf")]:
        bad = z2.clone()
        bad[3, 2] = value
        with pytest.raises(ValueError, match=f"`z2` has a non-finite value {word} at row 3, column 2"):
            loss(z1, bad)
    with pytest.raises(ValueError, match="queue has 2 columns"):
        kinfonce.kernel_infonce(z1, z2, torch.randn(6, 2), preset="laplacian", pairing="moco", engine="torch")
    with pytest.raises(ValueError, match="SimCLR pairing only"):
        kinfonce.kernel_infonce(z1, z2, spec={"loss": "spectral"}, pairing="clip", engine="torch")
    with pytest.raises(ValueError, match="`split` = 8"):
        spec = {"loss": "concat", "split": 8, "lambda": 0.5, "first": {"type": "exp", "gamma": 1.0, "tau": 0.2},
                "second": {"type": "exp", "gamma": 2.0, "tau": 0.2}}
        kinfonce.kernel_infonce(torch.randn(4, 8), torch.randn(4, 8), spec=spec, engine="torch")


def test_collapsed_embeddings_give_ln_of_the_candidate_count_on_the_tiled_path(monkeypatch):
    small_tiles(monkeypatch)
    b, d, k = 5, 4, 7
    z = torch.full((b, d), 0.5, dtype=torch.float64, device=DEVICE)
    queue = torch.full((k, d), 0.5, dtype=torch.float64, device=DEVICE)
    run = lambda *t, **kw: kinfonce.kernel_infonce(*t, engine="torch", **kw).item()  # noqa: E731
    for preset in kinfonce.PRESETS:
        assert run(z, z, preset=preset) == pytest.approx(math.log(2 * b - 1), abs=1e-12)
    assert run(z, z, queue, gamma=1, tau=0.2, pairing="moco") == pytest.approx(math.log(k), abs=1e-12)
    assert run(z, z, gamma=1, tau=0.2, pairing="clip") == pytest.approx(math.log(b), abs=1e-12)


def test_one_pair_has_no_negatives_and_a_zero_loss():
    """SimCLR with B = 1: each anchor's only candidate is its positive (ln 1 = 0), as native."""
    z1, z2 = make_inputs("simclr", b=1, d=3)
    native = value_and_grads(kinfonce.KernelInfoNCE("laplacian"), [z1, z2])
    tiled = value_and_grads(kinfonce.KernelInfoNCE("laplacian", engine="torch"), [z1, z2])
    assert tiled[0].item() == native[0].item() == 0.0
    assert all(torch.equal(g, h) for g, h in zip(tiled[1], native[1]))
