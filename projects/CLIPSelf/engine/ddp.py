"""DistributedDataParallel wrapping that also works on the CPU (gloo)."""
import torch
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = ["create_ddp_model"]


def create_ddp_model(model: torch.nn.Module, *, fp16_compression: bool = False, **kwargs):
    """Wrap ``model`` in DDP when there is more than one process.

    Unlike ``detectron2.engine.create_ddp_model``, ``device_ids`` is only set for CUDA models, so
    multi-process training on the CPU over gloo works too.

    Args:
        model (nn.Module): the model, already on its device.
        fp16_compression (bool): fp16 gradient compression hook (CUDA only).
        kwargs: other arguments of ``DistributedDataParallel``.
    """
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).is_cuda
    if on_cuda and "device_ids" not in kwargs:
        kwargs["device_ids"] = [comm.get_local_rank()]
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression and on_cuda:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
