"""Faults that were already handled stay handled: a NaN loss stops training with the iteration,
unicode paths work for images and checkpoints."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from clipself.checkpoint import read_checkpoint, save_checkpoint_file
from clipself.data.image_io import read_image_array
from clipself.engine import Trainer


class _NaNAfter(nn.Module):
    """Loss w^2, NaN from step ``bad`` on."""

    def __init__(self, bad: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.bad, self.calls = bad, 0

    def forward(self, batch):
        self.calls += 1
        loss = (self.w ** 2).sum()
        return {"loss": loss * float("nan") if self.calls > self.bad else loss}


def test_nan_loss_stops_with_the_iteration():
    model = _NaNAfter(bad=2)
    trainer = Trainer(model, [[{}]] * 10, torch.optim.SGD(model.parameters(), lr=0.1), seed=0)
    with pytest.raises(FloatingPointError, match=r"NaN at iteration=2"):
        trainer.train(0, 5)


def test_unicode_paths(tmp_path):
    folder = tmp_path / "Prüfung 数据 ü"
    folder.mkdir()
    image = folder / "bild_ä.png"
    Image.fromarray(np.full((4, 6, 3), 7, np.uint8)).save(image)
    assert read_image_array(str(image), format="RGB").shape == (4, 6, 3)
    save_checkpoint_file({"w": torch.arange(3)}, str(folder / "gewichte_ü.pth"))
    assert torch.equal(read_checkpoint(str(folder / "gewichte_ü.pth"))["w"], torch.arange(3))
