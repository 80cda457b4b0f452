"""gather=True across 2 processes (torch.distributed, gloo): after DDP averages the gradients,
one SGD step equals the single-process step on the concatenated batch, on the native engine
and on the tiled path (whose all-gather and gradient all-reduce stay on the tensors' device);
gather=False does not."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kinfonce

WORKER = Path(__file__).with_name("ddp_worker.py")


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).double()


def batch(n=8):
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(n, 6, generator=g, dtype=torch.float64)
    return x1, x1 + 0.2 * torch.randn(n, 6, generator=g, dtype=torch.float64)


def step(net, loss_fn, x1, x2):
    """One SGD step; returns the loss before it."""
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    z1 = torch.nn.functional.normalize(net(x1), dim=1)
    z2 = torch.nn.functional.normalize(net(x2), dim=1)
    loss = loss_fn(z1, z2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_ranks(tmp_path, gather, engine="native"):
    port = free_port()
    outs = [tmp_path / f"rank{r}-{gather}.pt" for r in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(r), "2", str(port), "1" if gather else "0", engine, str(outs[r])],
            cwd=WORKER.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output.decode()
    return [torch.load(o) for o in outs]


def single_process():
    net = model()
    loss = step(net, kinfonce.KernelInfoNCE("laplacian"), *batch())
    return loss, [p.detach() for p in net.parameters()]


@pytest.mark.parametrize("engine", ["native", "torch"])
def test_gathered_ddp_step_equals_the_single_process_step(tmp_path, engine):
    loss, params = single_process()
    ranks = two_ranks(tmp_path, gather=True, engine=engine)
    # Each rank's loss is the mean over its own anchors; their mean is the whole batch's loss.
    assert abs(sum(r["loss"] for r in ranks) / 2 - loss) < 1e-12
    for r in ranks:
        for got, want in zip(r["params"], params):
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-14), (got - want).abs().max()
    # The step itself is not negligible: the test would see a missing gradient term.
    assert max((p - q).abs().max().item() for p, q in zip(params, model().parameters())) > 1e-3


def test_without_gather_the_step_differs(tmp_path):
    _, params = single_process()
    ranks = two_ranks(tmp_path, gather=False)
    gap = max((got - want).abs().max().item() for got, want in zip(ranks[0]["params"], params))
    assert gap > 1e-4, gap
