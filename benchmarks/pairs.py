"""All-pairs TPR@FPR: time against the bare tiled matmul and against sklearn, and peak memory.

One run, on synthetic identities (N items, ``--per-id`` images each, D-dim features):

1. the evaluator, ``tpr_at_fpr`` at FPR = 1e-1 .. 1e-8 (strict rule), against the bare tiled
   ``X @ X.T`` over the same upper-triangle tiles (target: at most 1.5x); both timed
   interleaved, ``--repeats`` times; the ratio of medians and of minima are printed (on a
   shared machine the minima are the better estimate of uncontended time);
2. the evaluator against sklearn ``roc_curve`` on the same N(N-1)/2 scores, given as one vector
   (target: at most 0.1x; the vector alone is 5 bytes a pair, ``--skip-sklearn`` skips it);
3. memory, measured on the first evaluator run (before sklearn's arrays exist): the process's
   resident set after ``import torch`` (about 0.5 GB of libraries, whatever the evaluator does)
   and with the features made, the process's peak while the evaluator runs (Linux: the peak is
   reset just before, via /proc/self/clear_refs, so that making the data does not count) and
   the evaluator's own part of it, that peak minus the resident set before the call (target:
   < 1 GB at ``--n 100000``; it holds the normalised float32 copy of the features, N·D·4
   bytes, then O(bins + tile²) plus the collected scores).

    python benchmarks/pairs.py [--n 20000] [--d 512] [--per-id 10] [--block 1024]
                               [--repeats 5] [--skip-sklearn] [--device cpu] [--threads T]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

import arclab
from arclab.evaluation._tiles import as_features, tile_matmul, tiles_of
from arclab.evaluation.allpairs import _evaluate

FPRS = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]


def synthetic(n: int, d: int, per_id: int, device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """Identities as random centres; images as centre + noise of a random level per image, so
    positive cosines spread over about 0.1-0.5 and negatives sit near 0 (sd 1/sqrt(D))."""
    gen = torch.Generator().manual_seed(0)
    ids = np.arange(n) // per_id
    centres = torch.randn(int(ids.max()) + 1, d, generator=gen)
    noise = 1.0 + 1.5 * torch.rand(n, 1, generator=gen)
    x = torch.randn(n, d, generator=gen).mul_(noise)  # in place, a block of rows at a time:
    for a in range(0, n, 1024):                        # no N x D temporaries
        x[a:a + 1024] += centres[torch.as_tensor(ids[a:a + 1024])]
    return x.to(device), ids


def bare_matmul(x: torch.Tensor, block: int) -> float:
    """Seconds for the tiled X @ X.T over the upper triangle, nothing else."""
    workspace: dict = {}
    start = time.perf_counter()
    for tile in tiles_of(x.shape[0], block):
        tile_matmul(x, tile, workspace)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def evaluator(x: torch.Tensor, ids: np.ndarray, block: int) -> tuple[float, dict, dict]:
    start = time.perf_counter()
    res, info = _evaluate(x, ids, FPRS, block_size=block, device=None, mask=None,
                          rule="strict", ci=0.95, progress=False)
    return time.perf_counter() - start, res, info


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak() -> bool:
    """Reset the process's peak resident set (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set since the last :func:`reset_peak` (else since the process started)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def sklearn_time(x: torch.Tensor, ids: np.ndarray, block: int) -> float:
    """Seconds for sklearn roc_curve on the full score vector (built first, not timed)."""
    from sklearn.metrics import roc_curve

    xn = as_features(x, None)
    n = xn.shape[0]
    scores = np.empty(n * (n - 1) // 2, np.float32)
    labels = np.empty(n * (n - 1) // 2, bool)
    workspace: dict = {}
    at = 0
    for tile in tiles_of(n, block):
        i0, i1, j0, j1 = tile
        s = tile_matmul(xn, tile, workspace).cpu().numpy()
        ii, jj = np.triu_indices(i1 - i0, 1) if i0 == j0 else np.indices(s.shape).reshape(2, -1)
        scores[at:at + len(ii)] = s[ii, jj]
        labels[at:at + len(ii)] = ids[i0 + ii] == ids[j0 + jj]
        at += len(ii)
    start = time.perf_counter()
    roc_curve(labels, scores)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="number of items N")
    parser.add_argument("--d", type=int, default=512, help="feature dimension D")
    parser.add_argument("--per-id", type=int, default=10, help="images per identity")
    parser.add_argument("--block", type=int, default=1024, help="tile side")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-sklearn", action="store_true", help="skip the sklearn timing")
    parser.add_argument("--device", default="cpu", help="default: cpu; 'auto' for get_device()")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = arclab.get_device(None if args.device == "auto" else args.device)
    rss_import = rss_mb()
    x, ids = synthetic(args.n, args.d, args.per_id, device)
    print(f"device={device} N={args.n} D={args.d} per_id={args.per_id} block={args.block} "
          f"threads={torch.get_num_threads()} repeats={args.repeats} "
          f"pairs={args.n * (args.n - 1) // 2:,}")

    rss_before = rss_mb()
    exact = reset_peak()
    t_eval, res, info = evaluator(x, ids, args.block)  # first: its peak is measured alone
    peak = peak_rss_mb()
    features_mb = x.numel() * 4 / 2**20
    print(f"memory: {rss_import:,.0f} MB resident after import torch/arclab, {rss_before:,.0f} MB "
          f"with the features ({features_mb:,.0f} MB) made")
    print(f"evaluator peak: {peak:,.0f} MB process{'' if exact else ' (lifetime peak)'}, "
          f"{peak - rss_before:,.0f} MB of it the evaluator's (the normalised copy of the "
          f"features is {features_mb:,.0f} MB) (target < 1 GB at N=100,000)")
    print(f"passes over the tiles: {info['passes']} (bins read on speculation: "
          f"{info['speculated_bins']}, in later passes: {info['collected_bins']}, tiles read "
          f"again: {info['tiles_reread']} of {info['tiles']})")
    times: dict[str, list[float]] = {"bare": [bare_matmul(as_features(x, None), args.block)],
                                     "eval": [t_eval]}
    for _ in range(args.repeats - 1):
        times["bare"].append(bare_matmul(as_features(x, None), args.block))
        times["eval"].append(evaluator(x, ids, args.block)[0])
    bare, ev = statistics.median(times["bare"]), statistics.median(times["eval"])
    print(f"bare tiled X @ X.T (upper triangle): {bare:8.2f} s median, "
          f"{min(times['bare']):8.2f} s min")
    print(f"tpr_at_fpr, 8 FPRs 1e-1..1e-8:      {ev:8.2f} s median, "
          f"{min(times['eval']):8.2f} s min")
    print(f"ratio evaluator / bare matmul: {ev / bare:.2f}x of medians, "
          f"{min(times['eval']) / min(times['bare']):.2f}x of minima (target <= 1.5x)")
    for f, r in res.items():
        print(f"  FPR {f:.0e}: TPR {r['tpr']:.5f}  threshold {r['threshold']:.6f}  "
              f"achieved FPR {r['fpr_achieved']:.3e}")
    if args.skip_sklearn:
        print("sklearn roc_curve: skipped (--skip-sklearn)")
        return
    sk = sklearn_time(x, ids, args.block)
    print(f"sklearn roc_curve on {args.n * (args.n - 1) // 2:,} scores: {sk:8.2f} s")
    print(f"ratio evaluator / sklearn roc_curve: {ev / sk:.3f}x (target <= 0.1x)")


if __name__ == "__main__":
    main()
