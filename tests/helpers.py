"""Helpers shared by the test modules: the repository's scripts (not a package) imported as
modules, unique dataset names, and the random-weight toy checkpoints and synthetic images of the
``tools/demo.py`` tests."""
import importlib.util
import itertools
import os
import sys

import torch
from detectron2.config import LazyConfig, instantiate
from PIL import Image

from clipself.engine import apply_overrides
from clipself.synthetic import generate_scene

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COUNTER = itertools.count()


def load_file(path, name, register=False):
    """Import the Python file ``path`` as the module ``name``.

    Args:
        path (str): the file.
        name (str): the module name.
        register (bool): put the module in ``sys.modules`` first, so that its module-level
            functions pickle (``--workers`` of the prepare scripts).
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_script(name):
    """``datasets/<name>.py`` as the registered module ``name``."""
    return load_file(os.path.join(REPO, "datasets", name + ".py"), name, register=True)


def load_demo(name):
    """``tools/demo.py`` as the module ``name``."""
    return load_file(os.path.join(REPO, "tools", "demo.py"), name)


def unique(prefix):
    """``<prefix>_<pid>_<n>``: a dataset name no other registration of this process uses."""
    return f"{prefix}_{os.getpid()}_{next(_COUNTER)}"


def save_random_checkpoint(config, overrides, path):
    """Build the model of the LazyConfig ``config`` (with ``overrides``) from seed 0, save its
    weights as a Detectron2 checkpoint at ``path`` and return the model."""
    cfg = apply_overrides(LazyConfig.load(config), list(overrides))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    torch.save({"model": model.state_dict()}, path)
    return model


def demo_world(tmp, config, random_init, sizes, extra_opts=()):
    """What a ``tools/demo.py`` test runs on, in the folder ``tmp`` (a ``pathlib.Path``).

    Args:
        tmp (pathlib.Path): where the checkpoint and the images are written.
        config (str): a toy LazyConfig, its model built from seed 0 with ``random_init``.
        random_init (list[str]): overrides that make its towers random (no checkpoints needed).
        sizes (list): the sizes ((H, W) or a side) of synthetic val scenes 0, 1, ...
        extra_opts (list[str]): more overrides of the demo runs.

    Returns:
        dict: ``tmp``, ``images`` (``scene<i>.png`` paths), ``opts`` (the checkpoint,
        ``random_init`` and ``extra_opts`` as demo overrides) and ``model``.
    """
    ckpt = tmp / "random_init.pth"
    model = save_random_checkpoint(config, random_init, ckpt)
    images = []
    for i, size in enumerate(sizes):
        path = tmp / f"scene{i}.png"
        Image.fromarray(generate_scene(0, "val", i, image_size=size)["image"]).save(path)
        images.append(str(path))
    opts = [f"train.init_checkpoint={ckpt}", *random_init, *extra_opts]
    return {"tmp": tmp, "images": images, "opts": opts, "model": model}
