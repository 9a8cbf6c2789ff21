"""The training loop: Detectron2's ``SimpleTrainer`` plus AMP, gradient clipping and a model hook.

Model contract (the only thing the trainer knows about a model):

* In training mode, ``model(batched_inputs)`` returns ``dict[str, Tensor]`` of scalar losses; the
  trainer sums and back-propagates them. Models that need more than a forward pass (CLIPSelf's
  frozen teacher, a custom loss) keep it inside the model: frozen sub-modules have
  ``requires_grad=False`` and are therefore left out of the optimizer.
* Optional hook ``model.after_train_step(iteration: int) -> None``, called after every optimizer
  step (e.g. an EMA update or extra logging through ``get_event_storage()``).
"""
import contextlib
import logging
import random
import time
from typing import Optional

import numpy as np
import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..data.resumable_loader import sample_seed

__all__ = ["Trainer", "unwrap_model"]

_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16}


def amp_dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> "bfloat16"."""
    return str(dtype).replace("torch.", "")


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a (Distributed)DataParallel wrapper, or the model itself."""
    return model.module if isinstance(model, (DistributedDataParallel, DataParallel)) else model


class Trainer(SimpleTrainer):
    """``SimpleTrainer`` with mixed precision, gradient clipping and ``model.after_train_step``.

    Own trainer, not Detectron2's ``AMPTrainer``: that one asserts CUDA and uses
    ``torch.cuda.amp.autocast``, so bf16 training on a CPU (the miniature paper) cannot run.

    Args:
        model, data_loader, optimizer: as for ``SimpleTrainer``.
        amp_enabled (bool): run the forward pass under ``torch.autocast``.
        amp_dtype (str): "float16" (CUDA, with a GradScaler) or "bfloat16" (CUDA or CPU, no scaler).
        seed (int or None): when set, every step seeds ``random``, NumPy and torch with
            ``(seed, rank, iteration)`` first, so that the model's random draws (proposal and
            point sampling, dropout) at iteration ``i`` are the same in a resumed run.
        clip_grad_norm (float or None): clip the global gradient norm to this value.
        clip_grad_norm_type (float): the norm for clipping (2 = L2).
        kwargs: other ``SimpleTrainer`` arguments (e.g. ``gather_metric_period``).
    """

    def __init__(
        self,
        model,
        data_loader,
        optimizer,
        *,
        amp_enabled: bool = False,
        amp_dtype: str = "float16",
        clip_grad_norm: Optional[float] = None,
        clip_grad_norm_type: float = 2.0,
        seed: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.seed = None if seed is None or seed < 0 else int(seed)
        if amp_dtype not in _DTYPES:
            raise ValueError(f"amp_dtype must be one of {sorted(_DTYPES)}, got {amp_dtype!r}")
        param = next(iter(model.parameters()))
        self.device_type = param.device.type
        self.amp_enabled = bool(amp_enabled)
        self.amp_dtype = _DTYPES[amp_dtype]
        use_scaler = self.amp_enabled and self.amp_dtype == torch.float16
        if use_scaler and self.device_type != "cuda":
            raise ValueError("float16 AMP needs a GPU; on the CPU use amp_dtype='bfloat16'")
        self.grad_scaler = torch.amp.GradScaler(self.device_type, enabled=use_scaler)
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_norm_type = clip_grad_norm_type
        precision = f"AMP ({amp_dtype_name(self.amp_dtype)})" if self.amp_enabled else "fp32"
        logging.getLogger(__name__).info(f"Training precision: {precision} on {self.device_type}")

    def _autocast(self):
        if not self.amp_enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.amp_dtype)

    def seed_step(self) -> None:
        """Seed the RNGs of this step from ``(seed, rank, iteration)`` (see ``seed``)."""
        if self.seed is None:
            return
        s = sample_seed(self.seed, comm.get_rank(), self.iter)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)  # every device

    def run_step(self):
        assert self.model.training, "[Trainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        # after the data: creating the loader's iterator (first step of a run) draws from torch
        self.seed_step()

        with self._autocast():
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        if self.clip_grad_norm is not None:
            self.grad_scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            total_norm = torch.nn.utils.clip_grad_norm_(
                params, self.clip_grad_norm, norm_type=self.clip_grad_norm_type
            )
            self.storage.put_scalar("grad_norm", float(total_norm), smoothing_hint=True)
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

        hook = getattr(unwrap_model(self.model), "after_train_step", None)
        if hook is not None:
            hook(self.iter)

    def state_dict(self):
        ret = super().state_dict()
        # After the loop Detectron2 sets iter = max_iter (a count, not an index); store the last
        # completed iteration so that --resume from model_final starts at max_iter, not one later.
        if getattr(self, "max_iter", None) is not None:
            ret["iteration"] = min(self.iter, self.max_iter - 1)
        if self.grad_scaler.is_enabled():
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        # where the data stream stands: one global batch per completed iteration; with the
        # seed, the resumable loader and seed_step this is all the state a resume needs
        ret["data"] = {"batches": ret["iteration"] + 1, "seed": self.seed}
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.resumed_data = state_dict.get("data")
        if "grad_scaler" in state_dict and self.grad_scaler.is_enabled():
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
