"""IJB-B / IJB-C 1:1 verification from the command line, as insightface's ``eval_ijbc.py``.

Takes a bare ``model.pt`` (arcface_torch's, with ``--backbone``) or an arclab ``checkpoint.pt``
(:func:`arclab.models.export.load_backbone` reads either) and the folder ``eval_ijbc.py``'s
``--image-path`` names; prints the TAR table of :func:`arclab.evaluation.ijb.ijb_verification`::

    python -m arclab.evaluation.eval_ijbc model.pt --backbone r50 --root IJB_release/IJBC \
        --target IJBC --workers 8 --out ijbc.json

It is a module of its own so that ``python -m`` does not run a module the package has already
imported.

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import argparse
import json
import sys

from arclab import get_device
from arclab.atomic import atomic_path
from arclab.evaluation.ijb import ijb_verification
from arclab.models.export import load_backbone

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m arclab.evaluation.eval_ijbc SOURCE --root DIR``: prints the TAR table (and writes
    it as JSON with ``--out``); returns 0, or 2 for a bad argument or file (one line on
    stderr)."""
    parser = argparse.ArgumentParser(prog="python -m arclab.evaluation.eval_ijbc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a model.pt (bare backbone state dict) or checkpoint.pt")
    parser.add_argument("--root", required=True, help="folder holding meta/ and loose_crop/")
    parser.add_argument("--target", default="IJBC", help="IJBC (default) or IJBB")
    parser.add_argument("--backbone", default=None, help="network of a bare model.pt, e.g. r50")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4, help="image reading processes")
    parser.add_argument("--device", default=None, help="default: cuda, then mps, then cpu")
    parser.add_argument("--rule", default="nearest", choices=("nearest", "strict"))
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    try:
        model, _ = load_backbone(args.source, backbone=args.backbone)
        r = ijb_verification(model.to(get_device(args.device)), args.root, args.target,
                             rule=args.rule, batch_size=args.batch_size, workers=args.workers)
        if args.out:
            keep = {k: v for k, v in r.items() if k not in ("template_ids", "template_features")}
            with atomic_path(args.out) as tmp:
                tmp.write_text(json.dumps(keep, indent=1, default=str) + "\n")
    except (ValueError, OSError) as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    print(f"{r['name'].upper()}: {r['n_images']} images, {r['n_templates']} templates, "
          f"{r['n_pos']} genuine + {r['n_neg']} impostor pairs; TAR (%) at FAR ({r['rule']})")
    print(" ".join(f"{f:>7.0e}" for f in r["tar"]))
    print(" ".join(f"{100 * t:>7.2f}" for t in r["tar"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
