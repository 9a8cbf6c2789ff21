#!/usr/bin/env python
"""Custom-vocabulary detection with a trained F-ViT (paper Figure A2).

    python tools/demo.py --config-file configs/Synthetic/fvit_toy_clipself.py \\
        --input a.png b.png --vocabulary "red circle,blue square,green star" \\
        --base-classes "blue square" --output demo_out --confidence-threshold 0.3 \\
        train.init_checkpoint=output/synthetic/fvit_toy_clipself/model_final.pth

The vocabulary (comma-separated, or a .txt file with one class per line) is embedded with the
config's text encoder and swapped into the model (no retraining); without ``--vocabulary`` the
config's own classes are detected. ``--base-classes`` (same forms; ``""`` = none) says which
classes count as seen in training; by default those that are base in the model's training
vocabulary. Images are preprocessed like the config's test loader
(``dataloader.test.mapper.augmentations``).

For each input ``IMG``: ``OUTPUT/<stem>.png`` with boxes and "name score" labels, novel classes
in red and base classes in blue, and ``OUTPUT/<stem>.json`` with the detections (``box`` xyxy
in input-image pixels, ``class``, ``score``, ``novel``). Trailing ``key=value`` arguments
override the config (as in train_net.py); the weights come from ``train.init_checkpoint``.
"""
import argparse
import copy
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

NOVEL_COLOR = (1.0, 0.0, 0.0)  # red, RGB in [0, 1] as Visualizer expects
BASE_COLOR = (0.0, 0.0, 1.0)  # blue
DISPLAY_SIZE = 512  # small images are scaled up so that their long side reaches this
_OVERRIDE = re.compile(r"^\+?[A-Za-z_][\w.\[\]]*=")  # key=value (hydra override grammar)


class DemoError(Exception):
    """A user error: printed as ``error: ...`` and the demo exits non-zero."""


# ----------------------------------------------------------------------------- pure helpers


def parse_names(
    text: str, what: str = "--vocabulary", allow_empty: bool = False
) -> Tuple[str, ...]:
    """Class names from a comma-separated list or a text file with one name per line.

    Blank lines and lines starting with ``#`` of a file are skipped. Empty entries of a list
    (``"a,,b"``) are errors; an empty result is an error unless ``allow_empty``.
    """
    from clipself.fvit import parse_class_list

    if os.path.isfile(text):
        with open(text) as f:
            names = tuple(s.strip() for s in f.read().splitlines())
        names = tuple(n for n in names if n and not n.startswith("#"))
        if not names and not allow_empty:
            raise DemoError(f"{what}: file {text!r} lists no class names")
    elif not text.strip():
        if not allow_empty:
            raise DemoError(f"{what} is empty: give comma-separated class names or a .txt file")
        names = ()
    else:
        if text.endswith(".txt"):
            raise DemoError(f"{what}: class-list file {text!r} not found")
        try:
            names = parse_class_list(text)
        except ValueError as e:
            raise DemoError(f"{what}: {e}") from None
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DemoError(f"{what}: duplicate class names {dup}")
    return names


def check_base_classes(base: Sequence[str], names: Sequence[str]) -> None:
    """Raise :class:`DemoError` if some of ``base`` are not in the vocabulary ``names``."""
    unknown = [b for b in base if b not in set(names)]
    if unknown:
        raise DemoError(
            f"--base-classes not in the vocabulary: {unknown}; the vocabulary is {list(names)}"
        )


def default_base_classes(names: Sequence[str], train_vocab) -> List[str]:
    """The classes of ``names`` that are base in ``train_vocab`` (a :class:`Vocabulary`)."""
    base = {n for n, b in zip(train_vocab.class_names, train_vocab.base_mask.tolist()) if b}
    return [n for n in names if n in base]


def colors_for(novel: Sequence[bool]) -> List[Tuple[float, float, float]]:
    """One RGB colour in [0, 1] per detection: red for novel classes, blue for base ones."""
    return [NOVEL_COLOR if bool(n) else BASE_COLOR for n in novel]


def detections_to_records(
    instances,
    class_names: Sequence[str],
    base_mask,
    *,
    score_thresh: float = 0.0,
    max_dets: Optional[int] = None,
) -> List[Dict]:
    """Detections of one image as JSON-ready dicts, best first.

    Args:
        instances (Instances): ``pred_boxes``, ``scores``, ``pred_classes`` (any device).
        class_names (list[str]): the vocabulary's K names (index = ``pred_classes``).
        base_mask: (K,) bools (tensor or sequence), True = base (seen in training).
        score_thresh (float): keep scores >= this.
        max_dets (int): keep at most this many (None = all).
    Returns:
        list[dict]: ``box`` [x0, y0, x1, y1], ``class``, ``class_id``, ``score``, ``novel``.
    """
    base = [bool(b) for b in (base_mask.tolist() if hasattr(base_mask, "tolist") else base_mask)]
    boxes = instances.pred_boxes.tensor.detach().cpu().tolist()
    scores = instances.scores.detach().cpu().tolist()
    classes = instances.pred_classes.detach().cpu().tolist()
    records = [
        {"box": [round(float(v), 2) for v in box], "class": class_names[c], "class_id": int(c),
         "score": round(float(s), 4), "novel": not base[c]}
        for box, s, c in zip(boxes, scores, classes)
        if s >= score_thresh
    ]
    records.sort(key=lambda r: -r["score"])
    return records if max_dets is None else records[: max(0, int(max_dets))]


def display_scale(height: int, width: int, size: int = DISPLAY_SIZE) -> float:
    """Upscaling factor of the drawing: small images grow to a long side of ``size``."""
    return max(1.0, size / max(height, width))


def draw_detections(image: np.ndarray, records: Sequence[Dict]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with the boxes and "name score" labels of ``records``.

    Returns:
        (H', W', 3) uint8 RGB, scaled by :func:`display_scale`.
    """
    from detectron2.utils.visualizer import Visualizer

    vis = Visualizer(image, metadata=None, scale=display_scale(*image.shape[:2]))
    if records:
        vis.overlay_instances(
            boxes=np.array([r["box"] for r in records], dtype=np.float32).reshape(-1, 4),
            labels=[f"{r['class']} {r['score']:.2f}" for r in records],
            assigned_colors=colors_for([r["novel"] for r in records]),
        )
    return vis.get_output().get_image()


def output_stems(paths: Sequence[str]) -> List[str]:
    """File stems for the outputs, made unique (``a``, ``a_2``) when inputs share a name."""
    stems, seen = [], {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def write_json(path: str, result: Dict) -> None:
    """``result`` as indented JSON with one line per detection."""
    head = {k: v for k, v in result.items() if k != "detections"}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    dets = ",\n".join(f"  {json.dumps(r)}" for r in result.get("detections", []))
    body = f"\n{dets}\n " if dets else ""
    with open(path, "w") as f:
        f.write("{\n" + "\n".join(lines) + f'\n "detections": [{body}]\n}}\n')


# ----------------------------------------------------------------------------- model and data


def setup_config(config_file: str, opts: Sequence[str]):
    """LazyConfig of ``config_file`` with validated ``key=value`` overrides and a real device."""
    from detectron2.config import LazyConfig

    from clipself.engine import apply_overrides, resolve_device

    if not os.path.isfile(config_file):
        raise DemoError(f"config file {config_file!r} not found")
    cfg = LazyConfig.load(config_file)
    bad = [o for o in opts if "=" not in o]
    if bad:
        raise DemoError(f"config overrides must be key=value; got {bad}")
    try:
        cfg = apply_overrides(cfg, list(opts))
        cfg.train.device = resolve_device(cfg.train.get("device", "auto"))
    except (KeyError, RuntimeError) as e:
        raise DemoError(str(e).strip("'\"")) from None
    return cfg


def build_model(cfg):
    """``instantiate(cfg.model)``, weights from ``cfg.train.init_checkpoint``, in eval mode."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    ckpt = cfg.train.get("init_checkpoint", "") or ""
    if not ckpt:
        raise DemoError(
            "no detector weights: set them with the override train.init_checkpoint=PATH "
            "(e.g. the model_final.pth of a train_net.py run)"
        )
    if "://" not in ckpt and not os.path.isfile(ckpt):
        raise DemoError(f"checkpoint {ckpt!r} (train.init_checkpoint) not found")
    try:
        model = instantiate(cfg.model)
    except FileNotFoundError as e:
        raise DemoError(f"building the model: {e}") from None
    model.to(cfg.train.device)
    DetectionCheckpointer(model).load(ckpt)
    return model.eval()


def make_vocabulary(cfg, model, names: Optional[Sequence[str]], base: Optional[Sequence[str]]):
    """The :class:`Vocabulary` to detect.

    Args:
        names: the custom classes (None = the model's own vocabulary).
        base: the base classes (None = those base in the model's training vocabulary).
    """
    from detectron2.config import instantiate

    from clipself.fvit import build_vocabulary

    train_vocab = model.vocabulary
    if names is None:
        names = train_vocab.class_names
        base = default_base_classes(names, train_vocab) if base is None else base
        check_base_classes(base, names)
        return build_vocabulary(class_names=names, base_classes=base,
                                embeddings=train_vocab.embeddings.cpu())
    base = default_base_classes(names, train_vocab) if base is None else base
    check_base_classes(base, names)
    voc_cfg = cfg.model.roi_heads.box_predictor.vocabulary
    encoder_cfg = voc_cfg.get("text_encoder", None)
    if encoder_cfg is not None:
        encoder = instantiate(copy.deepcopy(encoder_cfg))
        return build_vocabulary(class_names=names, base_classes=base, text_encoder=encoder)
    if voc_cfg.get("embeddings", None) is not None:  # a name -> embedding dict may cover them
        try:
            return build_vocabulary(class_names=names, base_classes=base,
                                    embeddings=voc_cfg.embeddings)
        except (KeyError, TypeError) as e:
            raise DemoError(f"no text encoder in the config; its embeddings: {e}") from None
    raise DemoError("the config's vocabulary has neither a text_encoder nor embeddings")


def build_test_augmentations(cfg) -> list:
    """The config's test-time augmentations (``dataloader.test.mapper.augmentations``)."""
    from detectron2.config import instantiate
    from omegaconf import OmegaConf

    augs = OmegaConf.select(cfg, "dataloader.test.mapper.augmentations", default=None)
    if augs is None:
        print("warning: the config has no dataloader.test.mapper.augmentations; "
              "images go to the model unresized", file=sys.stderr)
        return []
    return list(instantiate(augs))


def model_input(image: np.ndarray, augmentations: Sequence, input_format: str = "RGB") -> Dict:
    """The model's input dict for one (H, W, 3) uint8 RGB image, resized like the test loader."""
    import detectron2.data.transforms as T

    aug_input = T.AugInput(image)
    T.AugmentationList(list(augmentations))(aug_input)
    resized = aug_input.image
    if input_format == "BGR":
        resized = resized[:, :, ::-1]
    chw = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    return {"image": chw, "height": image.shape[0], "width": image.shape[1]}


# ----------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="F-ViT LazyConfig (.py)")
    p.add_argument("--input", nargs="+", required=True, help="image files")
    p.add_argument("--vocabulary", default=None,
                   help="comma-separated class names or a .txt file with one per line "
                        "(default: the config's vocabulary)")
    p.add_argument("--base-classes", default=None,
                   help="base (seen) classes among the vocabulary, same forms; '' = none "
                        "(default: those base in the model's training vocabulary)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--confidence-threshold", type=float, default=0.3,
                   help="minimum score of a drawn detection")
    p.add_argument("--max-dets", type=int, default=100, help="detections per image at most")
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="key=value config overrides, e.g. train.init_checkpoint=PATH")
    return p


def _run(args) -> int:
    from detectron2.data.detection_utils import read_image
    from PIL import Image

    missing = [p for p in args.input if not os.path.isfile(p)]
    if missing:
        raise DemoError(f"input file(s) not found: {missing}")
    names = parse_names(args.vocabulary) if args.vocabulary is not None else None
    base = (parse_names(args.base_classes, "--base-classes", allow_empty=True)
            if args.base_classes is not None else None)
    if names is not None and base is not None:
        check_base_classes(base, names)  # before the (slow) model is built
    if args.max_dets < 1:
        raise DemoError(f"--max-dets must be positive; got {args.max_dets}")

    cfg = setup_config(args.config_file, args.opts)
    model = build_model(cfg)
    try:
        vocab = make_vocabulary(cfg, model, names, base)
    except ValueError as e:
        raise DemoError(f"vocabulary: {e}") from None
    model.set_vocabulary(vocab)
    # let the demo's threshold and cap, not the config's test settings, decide what is shown
    predictor = model.roi_heads.box_predictor
    predictor.test_score_thresh = min(predictor.test_score_thresh, args.confidence_threshold)
    predictor.test_topk_per_image = max(predictor.test_topk_per_image, args.max_dets)
    augs = build_test_augmentations(cfg)
    input_format = getattr(model, "input_format", "RGB")
    n_novel = int((~vocab.base_mask).sum())
    print(f"vocabulary: {vocab.num_classes} classes ({n_novel} novel, "
          f"{vocab.num_classes - n_novel} base) on {cfg.train.device}")

    os.makedirs(args.output, exist_ok=True)
    failed = []
    for i, (path, stem) in enumerate(zip(args.input, output_stems(args.input))):
        prefix = f"[{i + 1}/{len(args.input)}] {path}"
        try:
            image = read_image(path, format="RGB")
        except Exception as e:  # PIL raises several types for broken files
            print(f"{prefix}: error: cannot read the image ({type(e).__name__}: {e})",
                  file=sys.stderr)
            failed.append(path)
            continue
        with torch.no_grad():
            out = model([model_input(image, augs, input_format)])[0]["instances"]
        records = detections_to_records(out.to("cpu"), vocab.class_names, vocab.base_mask,
                                        score_thresh=args.confidence_threshold,
                                        max_dets=args.max_dets)
        png = os.path.join(args.output, stem + ".png")
        Image.fromarray(draw_detections(image, records)).save(png)
        write_json(os.path.join(args.output, stem + ".json"), {
            "image": path, "height": int(image.shape[0]), "width": int(image.shape[1]),
            "vocabulary": list(vocab.class_names), "novel_classes": list(vocab.novel_classes),
            "detections": records})
        novel = sum(r["novel"] for r in records)
        top = ", ".join(f"{r['class']} {r['score']:.2f}" for r in records[:3]) or "-"
        print(f"{prefix}: {len(records)} detections ({novel} novel, {len(records) - novel} "
              f"base); top: {top} -> {png}")
    if failed:
        print(f"error: {len(failed)} of {len(args.input)} images could not be read",
              file=sys.stderr)
        return 1
    return 0


def split_overrides(inputs: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(images, overrides) of ``--input``'s values: ``--input a.png key=value`` makes argparse
    give the trailing overrides to ``--input``; a value with ``=`` that is no file is one."""
    images, opts = [], []
    for s in inputs:
        is_opt = _OVERRIDE.match(s) is not None and not os.path.exists(s)
        (opts if is_opt or opts else images).append(s)
    return images, opts


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    args.input, opts = split_overrides(args.input)
    args.opts = opts + list(args.opts)
    if not args.input:
        print("error: --input: no image given", file=sys.stderr)
        return 1
    try:
        return _run(args)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
