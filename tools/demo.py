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

Open-vocabulary panoptic / semantic segmentation (paper Figure A3): when the config's model is a
:class:`clipself.panoptic.OVMaskFormer` the same command segments instead of detecting:

    python tools/demo.py --config-file configs/Synthetic/panoptic_toy_clipself.py \\
        --input a.png --vocabulary "red circle,blue square,grass,sky" \\
        --thing-classes "red circle,blue square" --task panoptic --output demo_out \\
        train.init_checkpoint=output/synthetic/panoptic_toy_clipself/model_final.pth

The vocabulary is embedded with ``model.vocabulary.text_encoder`` of the config.
``--thing-classes`` (same forms; ``""`` = all stuff) says which classes are things, the others
being stuff; by default those that are things in the model's training vocabulary.
``--base-classes`` gives the seen classes (used by the CLIP-score ensemble); by default those
seen in the training vocabulary. ``--task`` is ``panoptic`` (default) or ``semantic``;
``--confidence-threshold`` and ``--max-dets`` do not apply (override ``model.overlap_threshold``
/ ``model.object_mask_threshold`` instead). Outputs: ``OUTPUT/<stem>.png`` drawn by Detectron2's
Visualizer, one colour per class, unseen classes labelled with a leading ``*``; and
``OUTPUT/<stem>.json`` with the ``segments`` (``id``, ``class``, ``class_id``, ``isthing``,
``area`` in pixels, ``seen``) or, for ``--task semantic``, the ``classes`` present (``class``,
``class_id``, ``pixels``, ``seen``), largest first.

Open-vocabulary semantic segmentation with a :class:`clipself.catseg.CATSeg` config (paper
Table 4) works the same way (``--task`` is ``semantic``; ``--thing-classes`` does not apply):

    python tools/demo.py --config-file configs/Synthetic/catseg_toy.py \
        --input a.png --vocabulary "red circle,blue square,grass,sky" --output demo_out \
        train.init_checkpoint=output/synthetic/catseg_toy/model_final.pth

The vocabulary is embedded with the config's ``model.vocabulary`` text encoder and templates;
classes not in the training vocabulary (or its dataset's ``seen_classes``) are starred.
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
UNSEEN_PREFIX = "*"  # segmentation labels of classes unseen in training
TASKS = ("panoptic", "semantic")
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


def check_base_classes(
    base: Sequence[str], names: Sequence[str], what: str = "--base-classes"
) -> None:
    """Raise :class:`DemoError` if some of ``base`` are not in the vocabulary ``names``."""
    unknown = [b for b in base if b not in set(names)]
    if unknown:
        raise DemoError(
            f"{what} not in the vocabulary: {unknown}; the vocabulary is {list(names)}"
        )


def default_base_classes(names: Sequence[str], train_vocab) -> List[str]:
    """The classes of ``names`` that are base in ``train_vocab`` (a :class:`Vocabulary`)."""
    base = {n for n, b in zip(train_vocab.class_names, train_vocab.base_mask.tolist()) if b}
    return [n for n in names if n in base]


def default_thing_classes(
    names: Sequence[str], train_vocab, train_thing_ids: Sequence[int]
) -> List[str]:
    """The classes of ``names`` that are things in the training vocabulary ``train_vocab``
    (whose thing classes have the contiguous ids ``train_thing_ids``)."""
    things = {train_vocab.class_names[int(i)] for i in train_thing_ids}
    return [n for n in names if n in things]


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


def write_json(path: str, result: Dict, list_key: str = "detections") -> None:
    """``result`` as indented JSON with one line per entry of ``result[list_key]`` (last)."""
    head = {k: v for k, v in result.items() if k != list_key}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    dets = ",\n".join(f"  {json.dumps(r)}" for r in result.get(list_key, []))
    body = f"\n{dets}\n " if dets else ""
    with open(path, "w") as f:
        f.write("{\n" + "\n".join(lines) + f'\n {json.dumps(list_key)}: [{body}]\n}}\n')


# ----------------------------------------------------------------------------- segmentation


def segmentation_metadata(class_names: Sequence[str], seen_mask, thing_ids: Sequence[int]):
    """A throwaway :class:`Metadata` for drawing segmentations of ``class_names``.

    ``stuff_classes`` and ``thing_classes`` both list every class (segment ``category_id`` is the
    vocabulary index, things and stuff alike); unseen classes get a leading ``*``. Colours come
    from Detectron2's colormap, one per class index.
    """
    from detectron2.data.catalog import Metadata
    from detectron2.utils.colormap import colormap

    seen = [bool(b) for b in (seen_mask.tolist() if hasattr(seen_mask, "tolist") else seen_mask)]
    labels = [n if s else UNSEEN_PREFIX + n for n, s in zip(class_names, seen)]
    palette = colormap(rgb=True, maximum=255)
    colors = [tuple(int(v) for v in palette[i % len(palette)]) for i in range(len(labels))]
    return Metadata(
        name="__clipself_demo__", stuff_classes=labels, thing_classes=labels,
        stuff_colors=colors, thing_colors=colors,
        thing_dataset_id_to_contiguous_id={int(i): int(i) for i in thing_ids},
    )


def segments_to_records(
    panoptic_seg: torch.Tensor, segments_info: Sequence[Dict], class_names: Sequence[str],
    seen_mask,
) -> List[Dict]:
    """Panoptic segments of one image as JSON-ready dicts, by id.

    Args:
        panoptic_seg (Tensor): (H, W) int segment ids (0 = void).
        segments_info (list[dict]): ``id``, ``category_id`` (vocabulary index), ``isthing``.
        class_names (list[str]), seen_mask: the vocabulary's K names and (K,) seen flags.
    Returns:
        list[dict]: ``id``, ``class``, ``class_id``, ``isthing``, ``area`` (pixels), ``seen``.
    """
    seen = [bool(b) for b in (seen_mask.tolist() if hasattr(seen_mask, "tolist") else seen_mask)]
    ids = panoptic_seg.detach().cpu().flatten().long()
    top = max([int(s["id"]) for s in segments_info] + [int(ids.max()) if ids.numel() else 0])
    areas = torch.bincount(ids.clamp(min=0), minlength=top + 1).tolist()
    return [
        {"id": int(s["id"]), "class": class_names[int(s["category_id"])],
         "class_id": int(s["category_id"]), "isthing": bool(s["isthing"]),
         "area": int(areas[int(s["id"])]), "seen": seen[int(s["category_id"])]}
        for s in sorted(segments_info, key=lambda s: int(s["id"]))
    ]


def semantic_to_records(labels: torch.Tensor, class_names: Sequence[str], seen_mask) -> List[Dict]:
    """Per-class pixel counts of a (H, W) label map, largest first (absent classes left out).

    Returns:
        list[dict]: ``class``, ``class_id``, ``pixels``, ``seen``.
    """
    seen = [bool(b) for b in (seen_mask.tolist() if hasattr(seen_mask, "tolist") else seen_mask)]
    counts = torch.bincount(labels.detach().cpu().flatten().long(),
                            minlength=len(class_names)).tolist()
    records = [{"class": class_names[k], "class_id": k, "pixels": int(c), "seen": seen[k]}
               for k, c in enumerate(counts[: len(class_names)]) if c > 0]
    records.sort(key=lambda r: (-r["pixels"], r["class_id"]))
    return records


def draw_panoptic(image: np.ndarray, panoptic_seg: torch.Tensor, segments_info: Sequence[Dict],
                  metadata) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with the panoptic segments drawn (scaled like
    :func:`draw_detections`)."""
    from detectron2.utils.visualizer import Visualizer

    vis = Visualizer(image, metadata=metadata, scale=display_scale(*image.shape[:2]))
    info = [dict(s) for s in segments_info]  # the Visualizer writes "area" into them
    return vis.draw_panoptic_seg(panoptic_seg.detach().cpu(), info).get_image()


def draw_semantic(image: np.ndarray, labels: torch.Tensor, metadata) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with the (H, W) class-index map ``labels`` drawn."""
    from detectron2.utils.visualizer import Visualizer

    vis = Visualizer(image, metadata=metadata, scale=display_scale(*image.shape[:2]))
    return vis.draw_sem_seg(labels.detach().cpu()).get_image()


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


def is_panoptic(model) -> bool:
    """Whether ``model`` is an open-vocabulary segmenter (:class:`OVMaskFormer`), not an F-ViT."""
    from clipself.panoptic import OVMaskFormer

    return isinstance(model, OVMaskFormer)


def is_catseg(model) -> bool:
    """Whether ``model`` is a CAT-Seg semantic segmenter (:class:`clipself.catseg.CATSeg`)."""
    from clipself.catseg import CATSeg

    return isinstance(model, CATSeg)


def catseg_seen_classes(cfg, model) -> List[str]:
    """The classes a CAT-Seg model saw in training: its training dataset's ``seen_classes``
    metadata when set, else its training vocabulary."""
    from detectron2.data import MetadataCatalog

    name = cfg.model.vocabulary.get("dataset_name", None)
    seen = MetadataCatalog.get(name).get("seen_classes", None) if name else None
    return list(seen) if seen else list(model._vocabularies["train"].class_names)


def make_semseg_vocabulary(cfg, model, names: Optional[Sequence[str]],
                           base: Optional[Sequence[str]]):
    """(SemSegVocabulary, seen mask) for a CAT-Seg model: ``names`` embedded with the config's
    text encoder and templates (None = the model's test vocabulary)."""
    from detectron2.config import instantiate

    from clipself.catseg import semseg_vocabulary

    if names is None:
        vocab = model.vocabulary
    else:
        voc_cfg = cfg.model.vocabulary
        if voc_cfg.get("text_encoder", None) is None:
            raise DemoError("the config's vocabulary has no text_encoder to embed new classes")
        vocab = semseg_vocabulary(class_names=list(names),
                                  text_encoder=instantiate(copy.deepcopy(voc_cfg.text_encoder)),
                                  templates=voc_cfg.get("templates", "imagenet"))
    seen = set(catseg_seen_classes(cfg, model) if base is None else base)
    check_base_classes(base or [], vocab.class_names)
    return vocab, torch.tensor([n in seen for n in vocab.class_names], dtype=torch.bool)


def _segment_catseg(model, vocab, seen_mask, image: np.ndarray, inputs: Dict, metadata
                    ) -> Tuple[np.ndarray, Dict, str]:
    """CAT-Seg on one image: (picture, JSON result, summary)."""
    with torch.no_grad():
        out = model([inputs])[0]
    labels = out["sem_seg"].argmax(0).cpu()
    records = semantic_to_records(labels, vocab.class_names, seen_mask)
    names = list(vocab.class_names)
    result = {"task": "semantic", "vocabulary": names,
              "unseen_classes": [n for n, s in zip(names, seen_mask.tolist()) if not s],
              "classes": records}
    total = max(1, labels.numel())
    top = ", ".join(f"{r['class']} {100 * r['pixels'] / total:.0f}%" for r in records[:3])
    return (draw_semantic(image, labels, metadata), result,
            f"{len(records)} classes; top: {top or '-'}")


def vocabulary_config(cfg, model):
    """The config node that built ``model``'s vocabulary."""
    if is_panoptic(model):
        return cfg.model.vocabulary
    return cfg.model.roi_heads.box_predictor.vocabulary


def make_vocabulary(cfg, model, names: Optional[Sequence[str]], base: Optional[Sequence[str]]):
    """The :class:`Vocabulary` to detect or segment.

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
    voc_cfg = vocabulary_config(cfg, model)
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
    p.add_argument("--config-file", required=True,
                   help="F-ViT or OVMaskFormer (panoptic) LazyConfig (.py)")
    p.add_argument("--input", nargs="+", required=True, help="image files")
    p.add_argument("--vocabulary", default=None,
                   help="comma-separated class names or a .txt file with one per line "
                        "(default: the config's vocabulary)")
    p.add_argument("--base-classes", default=None,
                   help="base (seen) classes among the vocabulary, same forms; '' = none "
                        "(default: those base in the model's training vocabulary)")
    p.add_argument("--thing-classes", default=None,
                   help="panoptic models: thing classes among the vocabulary, same forms; "
                        "'' = none, the others are stuff (default: those that are things in "
                        "the model's training vocabulary)")
    p.add_argument("--task", choices=TASKS, default=None,
                   help="panoptic models: what to draw (default: panoptic)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--confidence-threshold", type=float, default=0.3,
                   help="F-ViT: minimum score of a drawn detection")
    p.add_argument("--max-dets", type=int, default=100,
                   help="F-ViT: detections per image at most")
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="key=value config overrides, e.g. train.init_checkpoint=PATH")
    return p


def _detect(model, vocab, image: np.ndarray, inputs: Dict, args) -> Tuple[np.ndarray, Dict, str]:
    """F-ViT on one image: (picture, JSON result, summary)."""
    with torch.no_grad():
        out = model([inputs])[0]["instances"]
    records = detections_to_records(out.to("cpu"), vocab.class_names, vocab.base_mask,
                                    score_thresh=args.confidence_threshold,
                                    max_dets=args.max_dets)
    result = {"vocabulary": list(vocab.class_names), "novel_classes": list(vocab.novel_classes),
              "detections": records}
    novel = sum(r["novel"] for r in records)
    top = ", ".join(f"{r['class']} {r['score']:.2f}" for r in records[:3]) or "-"
    summary = (f"{len(records)} detections ({novel} novel, {len(records) - novel} base); "
               f"top: {top}")
    return draw_detections(image, records), result, summary


def _segment(model, vocab, image: np.ndarray, inputs: Dict, args, metadata
             ) -> Tuple[np.ndarray, Dict, str]:
    """OVMaskFormer on one image: (picture, JSON result, summary)."""
    with torch.no_grad():
        out = model([inputs])[0]
    result = {"task": args.task, "vocabulary": list(vocab.class_names),
              "thing_classes": [vocab.class_names[i] for i in model.thing_ids],
              "unseen_classes": list(vocab.novel_classes)}
    if args.task == "semantic":
        labels = out["sem_seg"].argmax(0).cpu()
        records = semantic_to_records(labels, vocab.class_names, vocab.base_mask)
        result["classes"] = records
        total = max(1, labels.numel())
        top = ", ".join(f"{r['class']} {100 * r['pixels'] / total:.0f}%" for r in records[:3])
        summary = f"{len(records)} classes; top: {top or '-'}"
        return draw_semantic(image, labels, metadata), result, summary
    panoptic_seg, segments_info = out["panoptic_seg"]
    panoptic_seg = panoptic_seg.cpu()
    records = segments_to_records(panoptic_seg, segments_info, vocab.class_names, vocab.base_mask)
    result["segments"] = records
    things = sum(r["isthing"] for r in records)
    unseen = sum(not r["seen"] for r in records)
    top = ", ".join(r["class"] for r in sorted(records, key=lambda r: -r["area"])[:3]) or "-"
    summary = (f"{len(records)} segments ({things} things, {len(records) - things} stuff; "
               f"{unseen} unseen); largest: {top}")
    return draw_panoptic(image, panoptic_seg, segments_info, metadata), result, summary


def _run(args) -> int:
    missing = [p for p in args.input if not os.path.isfile(p)]
    if missing:
        raise DemoError(f"input file(s) not found: {missing}")
    names = parse_names(args.vocabulary) if args.vocabulary is not None else None
    base = (parse_names(args.base_classes, "--base-classes", allow_empty=True)
            if args.base_classes is not None else None)
    things = (parse_names(args.thing_classes, "--thing-classes", allow_empty=True)
              if args.thing_classes is not None else None)
    if names is not None and base is not None:
        check_base_classes(base, names)  # before the (slow) model is built
    if names is not None and things is not None:
        check_base_classes(things, names, "--thing-classes")
    if args.max_dets < 1:
        raise DemoError(f"--max-dets must be positive; got {args.max_dets}")

    cfg = setup_config(args.config_file, args.opts)
    model = build_model(cfg)
    if is_catseg(model):
        if things is not None or args.task not in (None, "semantic"):
            raise DemoError("CAT-Seg models segment semantically: --thing-classes and "
                            "--task panoptic do not apply")
        try:
            vocab, seen_mask = make_semseg_vocabulary(cfg, model, names, base)
            model.set_vocabulary(vocab, split="test")
        except ValueError as e:
            raise DemoError(f"vocabulary: {e}") from None
        args.task = "semantic"
        metadata = segmentation_metadata(vocab.class_names, seen_mask, [])
        n_unseen = int((~seen_mask).sum())
        print(f"vocabulary: {len(vocab.class_names)} classes ({n_unseen} unseen); task semantic "
              f"on {cfg.train.device}")
        return _run_images(args, cfg, model, "classes", lambda image, inputs: _segment_catseg(
            model, vocab, seen_mask, image, inputs, metadata))
    panoptic = is_panoptic(model)
    if not panoptic and (things is not None or args.task is not None):
        raise DemoError(f"--thing-classes and --task apply to panoptic models (OVMaskFormer); "
                        f"the config's model is a {type(model).__name__}")
    train_vocab, train_thing_ids = model.vocabulary, list(getattr(model, "thing_ids", []))
    try:
        vocab = make_vocabulary(cfg, model, names, base)
    except ValueError as e:
        raise DemoError(f"vocabulary: {e}") from None
    n_novel = int((~vocab.base_mask).sum())
    if panoptic:
        if things is None:
            things = default_thing_classes(vocab.class_names, train_vocab, train_thing_ids)
        check_base_classes(things, vocab.class_names, "--thing-classes")
        thing_ids = [vocab.class_names.index(n) for n in things]
        model.set_vocabulary(vocab, thing_ids)
        args.task = args.task or "panoptic"
        model.semantic_on = args.task == "semantic"
        model.panoptic_on = args.task == "panoptic"
        model.instance_on = False
        metadata = segmentation_metadata(vocab.class_names, vocab.base_mask, model.thing_ids)

        def process(image, inputs):
            return _segment(model, vocab, image, inputs, args, metadata)

        print(f"vocabulary: {vocab.num_classes} classes ({len(thing_ids)} things, "
              f"{vocab.num_classes - len(thing_ids)} stuff; {n_novel} unseen, "
              f"{vocab.num_classes - n_novel} seen); task {args.task} on {cfg.train.device}")
    else:
        model.set_vocabulary(vocab)
        # let the demo's threshold and cap, not the config's test settings, decide what is shown
        predictor = model.roi_heads.box_predictor
        predictor.test_score_thresh = min(predictor.test_score_thresh, args.confidence_threshold)
        predictor.test_topk_per_image = max(predictor.test_topk_per_image, args.max_dets)

        def process(image, inputs):
            return _detect(model, vocab, image, inputs, args)

        print(f"vocabulary: {vocab.num_classes} classes ({n_novel} novel, "
              f"{vocab.num_classes - n_novel} base) on {cfg.train.device}")
    list_key = ("detections" if not panoptic
                else "classes" if args.task == "semantic" else "segments")
    return _run_images(args, cfg, model, list_key, process)


def _run_images(args, cfg, model, list_key: str, process) -> int:
    """Run ``process(image, inputs) -> (picture, result, summary)`` on every input; write the
    pictures and JSON files."""
    from detectron2.data.detection_utils import read_image
    from PIL import Image

    augs = build_test_augmentations(cfg)
    input_format = getattr(model, "input_format", "RGB")

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
        picture, result, summary = process(image, model_input(image, augs, input_format))
        png = os.path.join(args.output, stem + ".png")
        Image.fromarray(picture).save(png)
        write_json(os.path.join(args.output, stem + ".json"), {
            "image": path, "height": int(image.shape[0]), "width": int(image.shape[1]),
            **result}, list_key=list_key)
        print(f"{prefix}: {summary} -> {png}")
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
