#!/usr/bin/env python
"""Write the synthetic world (images, COCO instances / panoptic / semantic / captions) to disk.

    python datasets/prepare_synthetic.py --root $DETECTRON2_DATASETS [--num-train 2000]
        [--num-val 300] [--seed 0] [--workers N] [--image-size 128] [--preview grid.png]

Everything goes under ``ROOT/synthetic/`` (layout in ``clipself.synthetic.writer``); the same
arguments give byte-identical files. The datasets ``synth_ovd_*``, ``synth_panoptic_*``,
``synth_sem_seg_*`` and ``synth_captions_*`` read them.
"""
import argparse
import os

from PIL import Image

from clipself.data.datasets.paths import dataset_root
from clipself.synthetic import prepare_world, render_preview


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=dataset_root(),
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-val", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="rendering processes (default: up to 4 for more than 200 images)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="fixed square scene size (default: random 96..192 px sides)")
    parser.add_argument("--preview", default=None,
                        help="also save a 4x4 grid of training scenes with boxes to this PNG")
    return parser


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    if args.num_train < 0 or args.num_val < 0 or args.seed < 0:
        raise SystemExit("--num-train, --num-val and --seed must be non-negative")
    paths = prepare_world(args.root, args.num_train, args.num_val, args.seed,
                          workers=args.workers, image_size=args.image_size, log=print)
    if args.preview:
        grid = render_preview(args.seed, "train", range(16), image_size=args.image_size)
        os.makedirs(os.path.dirname(os.path.abspath(args.preview)), exist_ok=True)
        Image.fromarray(grid).save(args.preview)
        print(f"[synthetic] preview: {args.preview}")
    return paths


if __name__ == "__main__":
    main()
