"""One rank of the two-process test: one SGD step of a tiny model under DDP (gloo) on this
rank's half of the batch. Usage: ddp_worker.py RANK WORLD PORT GATHER ENGINE OUT.pt"""

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import kinfonce
from test_distributed import batch, model, step

rank, world, port, gather, engine, out = (
    int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5], sys.argv[6]
)
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
x1, x2 = batch()
b = x1.shape[0] // world
rows = slice(rank * b, (rank + 1) * b)
ddp = DistributedDataParallel(model())
loss = step(ddp, kinfonce.KernelInfoNCE("laplacian", gather=gather, engine=engine), x1[rows], x2[rows])
torch.save({"loss": loss, "params": [p.detach() for p in ddp.module.parameters()]}, out)
dist.destroy_process_group()
