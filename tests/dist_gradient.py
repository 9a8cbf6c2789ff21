"""``python -m tests.dist_gradient OUT.pt WORLD_SIZE [overrides]``: the averaged gradient of the
first CLIPSelf training step with WORLD_SIZE gloo processes (rank 0 writes it to OUT.pt).

Each process builds the toy CLIPSelf model from the same seed and the resumable train loader
(its global batch does not depend on the number of processes), wraps the model in DDP and runs
one forward / backward pass on its slice of the first global batch."""
import sys

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import launch
from detectron2.utils import comm

from clipself.engine import apply_overrides, create_ddp_model

CONFIG = "configs/Synthetic/clipself_toy_patches.py"


def worker(out: str, overrides):
    cfg = apply_overrides(LazyConfig.load(CONFIG), overrides)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    loader = instantiate(cfg.dataloader.train)
    ddp = create_ddp_model(model, broadcast_buffers=False)
    batch = next(iter(loader))
    loss = sum(ddp(batch).values())
    loss.backward()  # DDP averages the gradients over the processes
    if comm.is_main_process():
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"grads": grads, "world_size": comm.get_world_size(),
                    "images": [b["image_id"] for b in batch]}, out)


if __name__ == "__main__":
    out, world_size, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    launch(worker, world_size, dist_url="auto", args=(out, overrides))
