"""``python -m arclab.train SPEC.yaml`` — train what a spec file describes (see
:mod:`arclab.train.spec`); under ``torchrun`` the processes join one DDP group (gloo on CPU,
nccl on CUDA) and share the global batch.

    python -m arclab.train configs/synthfaces_mbf_cpu.yaml --out runs/mbf_cpu
    torchrun --standalone --nproc-per-node 8 -m arclab.train configs/ms1mv3_r50.yaml --out runs/r50

Ready specs (run as they are, or copy and edit): configs/synthfaces_mbf_cpu.yaml (a CPU, about
3 minutes), configs/synthfaces_r18_cpu.yaml, configs/ms1mv3_r50.yaml and configs/ms1mv3_r100.yaml
(8 GPUs, as arcface_torch's), configs/glint360k_r100_pfc.yaml (Partial FC r = 0.1). A finished
run leaves model.pt (the bare backbone, for arcface_torch's tools and
``python -m arclab.models.export``) beside checkpoint.pt and log.jsonl.

The whole spec, the device and the run folder's checkpoint are checked before anything is
rendered or written: a problem ends the command with one line on stderr naming the key, option
or file, and exit status 2. An error during the run ends it with a one-line summary and the
path of a file holding the full traceback (in the run folder, else the temp folder), exit
status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from arclab.train.spec import check_run, load_spec, run_spec


def _error(message: str) -> None:
    """One line on stderr, whatever newlines the message holds."""
    print("error: " + " ".join(message.split()), file=sys.stderr)


def _traceback_file(out: Path) -> Path:
    """Write the current exception's traceback to ``out/traceback[.rankR].txt`` (or a temp
    file where the run folder cannot be written); returns its path."""
    rank = os.environ.get("RANK")
    text = traceback.format_exc()
    try:
        path = out / (f"traceback.rank{rank}.txt" if rank not in (None, "0") else "traceback.txt")
        path.write_text(text)
    except OSError:
        fd, name = tempfile.mkstemp(prefix="arclab-train-", suffix=".traceback.txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        path = Path(name)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m arclab.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="YAML file with train / data / validation sections")
    parser.add_argument("--out", default=None,
                        help="run folder (default: $ARCLAB_CACHE/runs/<hash of the spec>)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps in all (resume later); never below "
                             "the step the run has reached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 the run failed, 2 a bad spec,
    option or run folder, refused before anything was rendered or written)."""
    args = _parser().parse_args(argv)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = args.device
    if distributed and device is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    try:  # fails before any process group, rendering or training
        spec = load_spec(args.spec)
        out = check_run(spec, args.out, device=device, max_steps=args.max_steps)
    except (OSError, ValueError) as err:
        _error(f"{args.spec}: {err}")
        return 2
    if distributed:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend)
    try:
        result = run_spec(spec, out, device=device, max_steps=args.max_steps,
                          progress=not args.no_progress)
    except Exception as err:  # noqa: BLE001 - every failure ends in one line and a file
        path = _traceback_file(out)
        _error(f"{type(err).__name__}: {err} (full traceback: {path})")
        return 1
    finally:
        if distributed:
            dist.destroy_process_group()
    if not distributed or int(os.environ.get("RANK", "0")) == 0:
        last = result["validation"][-1] if result["validation"] else {}
        print(json.dumps({"out_dir": str(result["out_dir"]), "step": result["step"],
                          "loss": result["losses"][-1] if result["losses"] else None,
                          "validation": last}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
