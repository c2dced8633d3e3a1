"""``python -m arclab.train SPEC.yaml`` — train what a spec file describes (see
:mod:`arclab.train.spec`); under ``torchrun`` the processes join one DDP group (gloo on CPU,
nccl on CUDA) and share the global batch.

    python -m arclab.train configs/r18_synthfaces.yaml --out runs/r18
    torchrun --standalone --nproc-per-node 2 -m arclab.train SPEC.yaml --out runs/r18
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

from arclab.train.spec import load_spec, run_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arclab.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="YAML file with train / data / validation sections")
    parser.add_argument("--out", default=None,
                        help="run folder (default: $ARCLAB_CACHE/runs/<hash of the spec>)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps in all (resume later)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        spec = load_spec(args.spec)  # fails before any process group, rendering or training
    except (OSError, ValueError) as err:
        print(f"error: {args.spec}: {err}", file=sys.stderr)
        return 2
    device = args.device
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend)
    try:
        result = run_spec(spec, args.out, device=device, max_steps=args.max_steps,
                          progress=not args.no_progress)
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    if not distributed or int(os.environ.get("RANK", "0")) == 0:
        last = result["validation"][-1] if result["validation"] else {}
        print(json.dumps({"out_dir": str(result["out_dir"]), "step": result["step"],
                          "loss": result["losses"][-1] if result["losses"] else None,
                          "validation": last}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
