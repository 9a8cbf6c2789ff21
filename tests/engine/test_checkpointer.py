"""clipself.engine.Checkpointer and clipself.checkpoint.io: no code runs from a checkpoint file,
no checkpoint or metrics line is left half-written."""
import errno
import json
import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.utils.events import EventStorage

import clipself.checkpoint.io as ckpt_io
from clipself.checkpoint import (
    CheckpointWriteError,
    UnsafeCheckpointError,
    read_checkpoint,
    save_checkpoint_file,
)
from clipself.engine import Checkpointer, JSONWriter


class _Payload:
    """Unpickling it runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def evil_files(tmp_path):
    """An ``evil.pkl`` (plain pickle) and an ``evil.pth`` (torch.save) whose loading would create
    ``tmp_path/marker``; returns (pkl, pth, marker)."""
    marker = tmp_path / "marker"
    pkl, pth = tmp_path / "evil.pkl", tmp_path / "evil.pth"
    with open(pkl, "wb") as f:
        pickle.dump({"model": {"w": _Payload(marker)}, "__author__": "x"}, f)
    torch.save({"model": {"w": _Payload(marker)}}, pth)
    return str(pkl), str(pth), marker


def test_payload_files_are_refused_and_run_nothing(tmp_path):
    pkl, pth, marker = evil_files(tmp_path)
    model = torch.nn.Linear(2, 2)
    for path in (pkl, pth):
        with pytest.raises(UnsafeCheckpointError, match="could run code|refusing to unpickle"):
            Checkpointer(model).load(path)
        with pytest.raises(UnsafeCheckpointError):
            read_checkpoint(path)
    assert not marker.exists()
    # the same file is executable when unpickled naively: the test payload really works
    with open(pkl, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_model_zoo_pkl_of_arrays_still_loads(tmp_path):
    model = torch.nn.Linear(3, 2)
    weights = {k: v.detach().numpy() * 0 + 7 for k, v in model.state_dict().items()}
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "Detectron2 Model Zoo"}, f)
    Checkpointer(model).load(str(path))
    assert torch.equal(model.weight, torch.full((2, 3), 7.0))
    caffe2 = tmp_path / "caffe2.pkl"  # Detectron1 layout: blobs, momentum entries dropped
    with open(caffe2, "wb") as f:
        pickle.dump({"blobs": {"weight": np.ones((2, 3), np.float32),
                               "bias": np.zeros(2, np.float32),
                               "bias_momentum": np.zeros(2, np.float32)}}, f)
    Checkpointer(model).load(str(caffe2))
    assert torch.equal(model.weight, torch.ones(2, 3))


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        Checkpointer(torch.nn.Linear(2, 2)).load(str(tmp_path / "nothere.pth"))


def _disk_full_after(nbytes):
    """A ``torch.save`` that writes ``nbytes`` and then fails like a full disk."""
    def save(obj, f):
        f.write(b"x" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")
    return save


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(64, 64)
    ckpt = Checkpointer(model, str(tmp_path))
    ckpt.save("model_0000004")
    before = (tmp_path / "model_0000004.pth").read_bytes()
    monkeypatch.setattr(ckpt_io.torch, "save", _disk_full_after(100))
    with pytest.raises(CheckpointWriteError) as err:
        ckpt.save("model_final")
    msg = str(err.value)
    assert str(tmp_path) in msg and "MiB" in msg and "No space left" in msg
    assert not (tmp_path / "model_final.pth").exists()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000004.pth"]  # no tmp
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert (tmp_path / "model_0000004.pth").read_bytes() == before
    monkeypatch.undo()
    Checkpointer(torch.nn.Linear(64, 64)).load(str(tmp_path / "model_0000004.pth"))


def test_save_checkpoint_file_replaces_atomically(tmp_path):
    path = str(tmp_path / "a" / "w.pth")
    save_checkpoint_file({"x": torch.ones(3)}, path)
    save_checkpoint_file({"x": torch.zeros(3)}, path)
    assert torch.equal(read_checkpoint(path)["x"], torch.zeros(3))
    assert os.listdir(tmp_path / "a") == ["w.pth"]


def test_metrics_json_never_holds_a_partial_line(tmp_path, monkeypatch):
    path = str(tmp_path / "metrics.json")
    writer = JSONWriter(path)
    with EventStorage(0) as storage:
        storage.put_scalar("loss", 1.5, smoothing_hint=False)
        writer.write()
        storage.iter = 1
        storage.put_scalar("loss", 1.25, smoothing_hint=False)
        real_write = os.write

        def full_disk(fd, data):  # half of the bytes reach the disk, then ENOSPC
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full_disk)
        with pytest.raises(OSError, match="metrics.json.*last complete line"):
            writer.write()
        monkeypatch.undo()
        lines = open(path).read().splitlines()
        assert [json.loads(line)["loss"] for line in lines] == [1.5]
        writer.write()  # the next write after space was freed appends the missed iteration
    writer.close()
    assert [json.loads(line)["iteration"] for line in open(path)] == [0, 1]


def test_full_disk_reported_by_torch_as_runtime_error(tmp_path, monkeypatch):
    """torch's zip writer turns ENOSPC into ``RuntimeError: ... unexpected pos``."""
    def save(obj, f):
        f.write(b"x" * 10)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 10 vs 4")

    monkeypatch.setattr(ckpt_io.torch, "save", save)
    monkeypatch.setattr(ckpt_io, "_free_bytes", lambda folder: 1000)
    with pytest.raises(CheckpointWriteError, match=r"needs about .* MiB \(0.0 MiB free\)"):
        save_checkpoint_file({"w": torch.zeros(1000)}, str(tmp_path / "a.pth"))
    monkeypatch.setattr(ckpt_io, "_free_bytes", lambda folder: 10 * 2**30)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # not a full disk: as it was
        save_checkpoint_file({"w": torch.zeros(1000)}, str(tmp_path / "a.pth"))
    assert os.listdir(tmp_path) == []
