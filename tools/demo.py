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

``--input`` takes image files and folders (their images, sorted). For each input ``IMG``:
``OUTPUT/<stem>.png`` with boxes and "name score" labels, novel classes in red and base classes
in blue, and ``OUTPUT/<stem>.json`` with the detections (``box`` xyxy
in input-image pixels, ``class``, ``score``, ``novel``). The picture shows one box per object:
class-agnostic NMS at ``--nms-iou`` (0.25) keeps the best class of overlapping boxes, and a box
nested in a better one (``--nms-containment``: 0.5 of the smaller box inside both) is not drawn
either (``--no-agnostic-nms`` draws every detection); the JSON keeps all of them. Trailing
``key=value`` arguments override the config (as in train_net.py); the weights come from
``train.init_checkpoint``.

Open-vocabulary panoptic / semantic segmentation (paper Figure A3): when the config's model is a
:class:`clipself.modeling.panoptic.OVMaskFormer` the same command segments instead of detecting:

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

Open-vocabulary semantic segmentation with a :class:`clipself.modeling.catseg.CATSeg` config (paper
Table 4) works the same way (``--task`` is ``semantic``; ``--thing-classes`` does not apply):

    python tools/demo.py --config-file configs/Synthetic/catseg_toy.py \
        --input a.png --vocabulary "red circle,blue square,grass,sky" --output demo_out \
        train.init_checkpoint=output/synthetic/catseg_toy/model_final.pth

The vocabulary is embedded with the config's ``model.vocabulary`` text encoder and templates;
classes not in the training vocabulary (or its dataset's ``seen_classes``) are starred.
"""
import argparse
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from clipself.engine import OpenVocabPredictor
from clipself.engine.records import detection_records, segment_records, semantic_records
from clipself.structures import parse_class_list
from clipself.utils import atomic_path
from clipself.utils.visualize import agnostic_nms

NOVEL_COLOR = (1.0, 0.0, 0.0)  # red, RGB in [0, 1] as Visualizer expects
BASE_COLOR = (0.0, 0.0, 1.0)  # blue
DISPLAY_SIZE = 512  # small images are scaled up so that their long side reaches this
UNSEEN_PREFIX = "*"  # segmentation labels of classes unseen in training
TASKS = ("panoptic", "semantic")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_OVERRIDE = re.compile(r"^\+?[A-Za-z_][\w.\[\]]*=")  # key=value (hydra override grammar)


class DemoError(Exception):
    """A user error: printed as ``error: ...`` and the demo exits non-zero."""


# ----------------------------------------------------------------------------- files


def parse_names(
    text: str, what: str = "--vocabulary", allow_empty: bool = False
) -> Tuple[str, ...]:
    """Class names from a comma-separated list or a text file with one name per line.

    Blank lines and lines starting with ``#`` of a file are skipped. Empty entries of a list
    (``"a,,b"``) are errors; an empty result is an error unless ``allow_empty``.
    """
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


def check_subset(names: Sequence[str], vocabulary: Sequence[str], what: str) -> None:
    """Raise :class:`DemoError` if some of ``names`` are not in the ``vocabulary``."""
    unknown = [n for n in names if n not in set(vocabulary)]
    if unknown:
        raise DemoError(f"{what} not in the vocabulary: {unknown}; the vocabulary is "
                        f"{list(vocabulary)}")


def expand_inputs(paths: Sequence[str]) -> List[str]:
    """Image files of ``--input``: files as given, folders as their images (sorted)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, n) for n in os.listdir(p)
                           if n.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise DemoError(f"folder {p!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            out += found
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise DemoError(f"input file(s) not found: {[p]}")
    return out


def output_stems(paths: Sequence[str]) -> List[str]:
    """File stems for the outputs, made unique (``a``, ``a_2``) when inputs share a name."""
    stems, seen = [], {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def write_json(path: str, result: Dict, list_key: str = "detections") -> None:
    """``result`` as indented JSON with one line per entry of ``result[list_key]`` (last),
    written atomically."""
    head = {k: v for k, v in result.items() if k != list_key}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    dets = ",\n".join(f"  {json.dumps(r)}" for r in result.get(list_key, []))
    body = f"\n{dets}\n " if dets else ""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("{\n" + "\n".join(lines) + f'\n {json.dumps(list_key)}: [{body}]\n}}\n')


# ----------------------------------------------------------------------------- drawing


def colors_for(novel: Sequence[bool]) -> List[Tuple[float, float, float]]:
    """One RGB colour in [0, 1] per detection: red for novel classes, blue for base ones."""
    return [NOVEL_COLOR if bool(n) else BASE_COLOR for n in novel]


def display_scale(height: int, width: int, size: int = DISPLAY_SIZE) -> float:
    """Upscaling factor of the drawing: small images grow to a long side of ``size``."""
    return max(1.0, size / max(height, width))


def draw_detections(image: np.ndarray, records: Sequence[Dict]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with the boxes and "name score" labels of ``records``.

    Returns:
        (H', W', 3) uint8 RGB, scaled by :func:`display_scale`.
    """
    vis = Visualizer(image, metadata=None, scale=display_scale(*image.shape[:2]))
    if records:
        vis.overlay_instances(
            boxes=np.array([r["box"] for r in records], dtype=np.float32).reshape(-1, 4),
            labels=[f"{r['class']} {r['score']:.2f}" for r in records],
            assigned_colors=colors_for([r["novel"] for r in records]),
        )
    return vis.get_output().get_image()


def segmentation_metadata(vocabulary) -> Metadata:
    """A throwaway :class:`Metadata` for drawing segmentations of a vocabulary's classes.

    ``stuff_classes`` and ``thing_classes`` both list every class (segment ``category_id`` is the
    vocabulary index, things and stuff alike); unseen classes get a leading ``*``. Colours come
    from Detectron2's colormap, one per class index.
    """
    labels = [n if s else UNSEEN_PREFIX + n
              for n, s in zip(vocabulary.class_names, vocabulary.seen_mask.tolist())]
    palette = colormap(rgb=True, maximum=255)
    colors = [tuple(int(v) for v in palette[i % len(palette)]) for i in range(len(labels))]
    return Metadata(
        name="__clipself_demo__", stuff_classes=labels, thing_classes=labels,
        stuff_colors=colors, thing_colors=colors,
        thing_dataset_id_to_contiguous_id={int(i): int(i) for i in vocabulary.thing_ids},
    )


def draw_panoptic(image: np.ndarray, panoptic_seg: torch.Tensor, segments_info: Sequence[Dict],
                  metadata) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with the panoptic segments drawn (scaled like
    :func:`draw_detections`)."""
    vis = Visualizer(image, metadata=metadata, scale=display_scale(*image.shape[:2]))
    info = [dict(s) for s in segments_info]  # the Visualizer writes "area" into them
    return vis.draw_panoptic_seg(panoptic_seg.detach().cpu(), info).get_image()


def draw_semantic(image: np.ndarray, labels: torch.Tensor, metadata) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with the (H, W) class-index map ``labels`` drawn."""
    vis = Visualizer(image, metadata=metadata, scale=display_scale(*image.shape[:2]))
    return vis.draw_sem_seg(labels.detach().cpu()).get_image()


# ----------------------------------------------------------------------------- one image


def drawn_records(records: Sequence[Dict], iou: Optional[float],
                  containment: Optional[float] = None) -> List[Dict]:
    """The detections a picture shows: all of them (``iou`` None) or those kept by class-agnostic
    NMS at ``iou`` and ``containment`` (:func:`clipself.utils.visualize.agnostic_nms`), by
    decreasing score."""
    if iou is None or not records:
        return list(records)
    keep = agnostic_nms(torch.tensor([r["box"] for r in records]),
                        torch.tensor([r["score"] for r in records]), iou,
                        containment=containment)
    return [records[i] for i in keep.tolist()]


def show_detections(out: Dict, vocab, image: np.ndarray, args) -> Tuple[np.ndarray, Dict, str]:
    """(picture, JSON result, summary) of an F-ViT output; the JSON keeps every detection, the
    picture those of :func:`drawn_records`."""
    records = detection_records(out["instances"], vocab, score_thresh=args.confidence_threshold,
                                max_dets=args.max_dets)
    result = {"vocabulary": list(vocab.class_names), "novel_classes": list(vocab.unseen_classes),
              "detections": records}
    drawn = drawn_records(records, args.nms_iou if args.agnostic_nms else None,
                          args.nms_containment)
    novel = sum(r["novel"] for r in records)
    top = ", ".join(f"{r['class']} {r['score']:.2f}" for r in records[:3]) or "-"
    summary = (f"{len(records)} detections ({novel} novel, {len(records) - novel} base; "
               f"{len(drawn)} drawn); top: {top}")
    return draw_detections(image, drawn), result, summary


def show_semantic(out: Dict, vocab, image: np.ndarray, result: Dict, metadata
                  ) -> Tuple[np.ndarray, Dict, str]:
    """(picture, JSON result, summary) of a ``sem_seg`` output."""
    labels = out["sem_seg"].argmax(0)
    records = semantic_records(labels, vocab)
    total = max(1, labels.numel())
    top = ", ".join(f"{r['class']} {100 * r['pixels'] / total:.0f}%" for r in records[:3])
    return (draw_semantic(image, labels, metadata), {**result, "classes": records},
            f"{len(records)} classes; top: {top or '-'}")


def show_panoptic(out: Dict, vocab, image: np.ndarray, result: Dict, metadata
                  ) -> Tuple[np.ndarray, Dict, str]:
    """(picture, JSON result, summary) of a ``panoptic_seg`` output."""
    panoptic_seg, segments_info = out["panoptic_seg"]
    records = segment_records(panoptic_seg, segments_info, vocab)
    things = sum(r["isthing"] for r in records)
    unseen = sum(not r["seen"] for r in records)
    top = ", ".join(r["class"] for r in sorted(records, key=lambda r: -r["area"])[:3]) or "-"
    summary = (f"{len(records)} segments ({things} things, {len(records) - things} stuff; "
               f"{unseen} unseen); largest: {top}")
    return (draw_panoptic(image, panoptic_seg, segments_info, metadata),
            {**result, "segments": records}, summary)


# ----------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True,
                   help="F-ViT, panoptic (OVMaskFormer) or CAT-Seg LazyConfig (.py)")
    p.add_argument("--input", nargs="+", required=True, help="image files or folders")
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
                   help="F-ViT: minimum score of a drawn detection (the config's "
                        "model.roi_heads.box_predictor.test_score_thresh keeps fewer)")
    p.add_argument("--max-dets", type=int, default=100,
                   help="F-ViT: detections per image at most")
    p.add_argument("--agnostic-nms", action=argparse.BooleanOptionalAction, default=True,
                   help="F-ViT pictures: draw one box per object (class-agnostic NMS over the "
                        "detections; the JSON keeps all); --no-agnostic-nms draws every one")
    p.add_argument("--nms-iou", type=float, default=0.25,
                   help="F-ViT pictures: IoU threshold of --agnostic-nms")
    p.add_argument("--nms-containment", type=float, default=0.5,
                   help="F-ViT pictures: --agnostic-nms also drops a box when this share of the "
                        "smaller of it and a better kept box is their intersection (1: only a "
                        "box wholly inside another)")
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="key=value config overrides, e.g. train.init_checkpoint=PATH")
    return p


def _load(args) -> OpenVocabPredictor:
    try:
        return OpenVocabPredictor.from_config(args.config_file, overrides=args.opts)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        raise DemoError(str(e).strip("'\"")) from None


def _task(args, predictor) -> str:
    """"detection", "panoptic" or "semantic", checked against what the model outputs."""
    outputs = predictor.outputs
    name = type(predictor.model).__name__
    if "panoptic_seg" in outputs:
        return args.task or "panoptic"
    if args.task == "panoptic" or (args.thing_classes is not None and "instances" not in outputs):
        raise DemoError(f"{name} models segment semantically: --thing-classes and --task "
                        "panoptic do not apply")
    if "instances" in outputs:
        if args.thing_classes is not None or args.task is not None:
            raise DemoError(f"--thing-classes and --task apply to panoptic models "
                            f"(OVMaskFormer); the config's model is a {name}")
        return "detection"
    if "sem_seg" in outputs:
        return "semantic"
    raise DemoError(f"{name} predicts no detections or segments (a CLIPSelf config?); use "
                    "OpenVocabPredictor.dense_features / region_features")


def _run(args) -> int:
    inputs = expand_inputs(args.input)
    names = parse_names(args.vocabulary) if args.vocabulary is not None else None
    base = (parse_names(args.base_classes, "--base-classes", allow_empty=True)
            if args.base_classes is not None else None)
    things = (parse_names(args.thing_classes, "--thing-classes", allow_empty=True)
              if args.thing_classes is not None else None)
    if names is not None and base is not None:
        check_subset(base, names, "--base-classes")  # before the (slow) model is built
    if names is not None and things is not None:
        check_subset(things, names, "--thing-classes")
    if args.max_dets < 1:
        raise DemoError(f"--max-dets must be positive; got {args.max_dets}")
    if not 0.0 <= args.nms_iou <= 1.0:
        raise DemoError(f"--nms-iou must be in [0, 1]; got {args.nms_iou}")
    if not 0.0 < args.nms_containment <= 1.0:
        raise DemoError(f"--nms-containment must be in (0, 1]; got {args.nms_containment}")

    predictor = _load(args)
    task = _task(args, predictor)
    if names is None:
        check_subset(base or [], predictor.vocabulary.class_names, "--base-classes")
        check_subset(things or [], predictor.vocabulary.class_names, "--thing-classes")
    try:
        vocab = predictor.set_vocabulary(names, seen_classes=base, thing_classes=things)
    except ValueError as e:
        raise DemoError(f"vocabulary: {e}") from None
    n_unseen = len(vocab.unseen_classes)
    if task == "detection":
        print(f"vocabulary: {vocab.num_classes} classes ({n_unseen} novel, "
              f"{vocab.num_classes - n_unseen} base) on {predictor.device}")
    elif "panoptic_seg" in predictor.outputs:
        n_things = len(vocab.thing_ids)
        print(f"vocabulary: {vocab.num_classes} classes ({n_things} things, "
              f"{vocab.num_classes - n_things} stuff; {n_unseen} unseen, "
              f"{vocab.num_classes - n_unseen} seen); task {task} on {predictor.device}")
    else:
        print(f"vocabulary: {vocab.num_classes} classes ({n_unseen} unseen); task {task} "
              f"on {predictor.device}")
    metadata = segmentation_metadata(vocab)
    seg_result = {"task": task, "vocabulary": list(vocab.class_names)}
    if "panoptic_seg" in predictor.outputs:
        seg_result["thing_classes"] = list(vocab.thing_classes)
    seg_result["unseen_classes"] = list(vocab.unseen_classes)

    def process(out, image):
        if task == "detection":
            return show_detections(out, vocab, image, args)
        if task == "semantic":
            return show_semantic(out, vocab, image, seg_result, metadata)
        return show_panoptic(out, vocab, image, seg_result, metadata)

    list_key = {"detection": "detections", "semantic": "classes", "panoptic": "segments"}[task]
    return _run_images(inputs, args.output, predictor, list_key, process)


def _run_images(inputs: Sequence[str], output: str, predictor, list_key: str, process) -> int:
    """``process(outputs, image) -> (picture, result, summary)`` on every input; write the
    pictures and JSON files."""
    os.makedirs(output, exist_ok=True)
    failed = []
    for i, (path, stem) in enumerate(zip(inputs, output_stems(inputs))):
        prefix = f"[{i + 1}/{len(inputs)}] {path}"
        try:
            image, _ = predictor.model_input(path)
        except ValueError as e:
            print(f"{prefix}: error: {e}", file=sys.stderr)
            failed.append(path)
            continue
        picture, result, summary = process(predictor(image), image)
        png = os.path.join(output, stem + ".png")
        try:
            with atomic_path(png) as tmp:
                Image.fromarray(picture).save(tmp, format="PNG")
            write_json(os.path.join(output, stem + ".json"), {
                "image": path, "height": int(image.shape[0]), "width": int(image.shape[1]),
                **result}, list_key=list_key)
        except OSError as e:
            raise DemoError(f"cannot write to {output!r}: {e.strerror or e}") from None
        print(f"{prefix}: {summary} -> {png}")
    if failed:
        print(f"error: {len(failed)} of {len(inputs)} images could not be read",
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
