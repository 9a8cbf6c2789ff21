"""Detectron2's checkpointer, made safe: no code runs from a file, no file is left half-written.

:class:`Checkpointer` is ``DetectionCheckpointer`` with three changes:

* every file is read by :func:`clipself.checkpoint.read_checkpoint` (``weights_only`` torch
  loading; model-zoo ``.pkl`` files through an unpickler that rebuilds only NumPy arrays), where
  Detectron2 calls ``pickle.load`` on ``.pkl`` files and so runs whatever they ask for;
* checkpoints and the ``last_checkpoint`` tag are written to a temporary file and renamed, so a
  crash or a full disk never leaves a truncated ``model_final.pth`` (the previous checkpoint
  stays intact and the error names the folder and the space needed);
* :meth:`Checkpointer.load` of a local file that does not exist fails with the path and what to
  do (Detectron2 raises a bare assertion).
"""
import os

from detectron2.checkpoint import DetectionCheckpointer

from ..checkpoint import read_checkpoint, save_checkpoint_file, save_text_file

__all__ = ["Checkpointer"]


class Checkpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with safe reading and atomic writing (arguments as its)."""

    def load(self, path: str, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint not found: {path}. Pass an existing file (train.init_checkpoint=... "
                f"or, with --resume, the last_checkpoint of train.output_dir).")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str):
        if filename.endswith(".pkl"):
            data = read_checkpoint(filename)  # arrays only: nothing in the file can run
            if isinstance(data, dict) and "model" in data and "__author__" in data:
                self.logger.info("Reading a file from '{}'".format(data["__author__"]))
                return data
            # a Caffe2 / Detectron1 model-zoo file, as Detectron2 reads it
            if isinstance(data, dict) and "blobs" in data:
                data = data["blobs"]
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        return super()._load_file(filename)

    def _torch_load(self, f: str):
        loaded = read_checkpoint(f)
        if not isinstance(loaded, dict):
            raise ValueError(f"{f}: expected a dict (a state dict or a checkpoint), got "
                             f"{type(loaded).__name__}")
        return loaded

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        save_checkpoint_file(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_text_file(last_filename_basename, os.path.join(self.save_dir, "last_checkpoint"))
