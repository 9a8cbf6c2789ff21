#!/usr/bin/env python
"""CNN vs ViT dense features on the synthetic world: the paper's motivation in miniature.

``make demo-cnn`` runs this script (not part of ``make demo``). It pre-trains a toy CNN CLIP
(ModifiedResNet) by the toy ViT's recipe, evaluates region recognition of both towers' dense
features against their image crops (paper Table 2 protocol, several input sizes), draws K-Means
maps of both side by side, and writes ``OUTPUT/REPORT.md``, ``OUTPUT/metrics.json`` and
``OUTPUT/kmeans_cnn_vs_vit.png`` (docs/cnn_vs_vit.md). The world and the toy ViT of ``--demo``
(``make demo``'s output) are reused when their settings match.

Usage::

    python tools/cnn_vs_vit.py --output output/demo_cnn [--demo output/demo] [--quick]
"""
import argparse
import time

from clipself.engine.cnn_vs_vit import run_cnn_vs_vit


def _log(msg: str) -> None:
    print(f"[cnn-vs-vit {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo_cnn")
    parser.add_argument("--demo", default="output/demo",
                        help="make demo's output folder (world and toy ViT reused if they match)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (integration test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return run_cnn_vs_vit(args.output, demo=args.demo, quick=args.quick, seed=args.seed, log=_log)


if __name__ == "__main__":
    main()
