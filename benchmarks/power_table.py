"""How many seeds and how large a test set resolve notebook 05's ArcFace vs NormFace question?

Trains ArcFace and NormFace (mbf at 32 px, 100 SynthFaces identities × 10 images, s = 32,
batch 64, the notebooks' SGD recipe) for ``--seeds``, paired by seed (same data, order and
initialisation), checks each run converged (:func:`arclab.train.convergence.convergence`),
scores every model on held-out identities with the exact all-pairs TPR at FPR = 1e-3, and
compares them with :func:`arclab.evaluation.paired.compare_paired` (identity-level bootstrap
shared by every run). Then it prints the power table: the 95% half-width of ArcFace − NormFace
(percentage points of TPR) for 1, 3 and 5 seeds and test sets of 0.5–4× the measured one,
measured where the runs allow it and predicted from the variance parts elsewhere, each with
the CPU-minutes the design costs on this machine (training time from the runs' own logs, the
evaluation timed here), and the cheapest design reaching a half-width of ``--target`` points.

Runs are cached by spec under ``$ARCLAB_CACHE/runs`` (the notebooks share them), so a second
call only evaluates. Results go to ``--out`` as JSON.

    python benchmarks/power_table.py [--seeds 0 1 2 3 4] [--epochs 53] [--eval-ids 500]
                                     [--per-id 4] [--fpr 1e-3] [--target 1.0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from arclab.data import cache, splits
from arclab.data.params import SynthConfig
from arclab.evaluation import all_pair_scores
from arclab.evaluation.paired import (
    allpairs_tpr_boot,
    compare_paired,
    identity_resamples,
    predict_half_width,
    scale_to_resolve,
)
from arclab.models import embed_images
from arclab.train import run_spec, tutorial_spec
from arclab.train.convergence import convergence

METHODS = ("arcface", "normface")


def train_runs(seeds: list[int], epochs: int) -> dict:
    """Every (method, seed) run: model, curves, convergence, training CPU-seconds."""
    runs = {}
    for method in METHODS:
        for seed in seeds:
            spec = tutorial_spec(backbone="mbf", input_size=32, embedding_size=128,
                                 margin=method, scale=32.0, n_train_ids=100, n_per_id=10,
                                 epochs=epochs, batch_size=64, seed=seed)
            t0 = time.perf_counter()
            run = run_spec(spec, progress=False)
            wall = time.perf_counter() - t0
            log = [json.loads(x) for x in (Path(run["out_dir"]) / "log.jsonl").read_text()
                   .splitlines() if '"images_per_s"' in x]
            seconds = sum(64 / r["images_per_s"] for r in log)  # step time, as logged
            conv = convergence(run["losses"], run["target_angles"])
            first = next((n for n in range(100, len(run["losses"]) + 1, 25) if convergence(
                run["losses"][:n], run["target_angles"][:n])["converged"]), None)
            runs[method, seed] = {"model": run["model"], "train_s": seconds, "wall_s": wall,
                                  "steps": len(run["losses"]), "convergence": conv,
                                  "first_converged_step": first,
                                  "theta_start": run["target_angles"][0],
                                  "theta_end": float(np.mean(run["target_angles"][-20:]))}
            print(f"{method:8s} seed {seed}: {len(run['losses'])} steps, "
                  f"{seconds / 60:.1f} min of steps (this call {wall / 60:.1f} min), θ_y "
                  f"{runs[method, seed]['theta_start']:.0f}° -> "
                  f"{runs[method, seed]['theta_end']:.0f}°, converged: {conv['converged']} "
                  f"(rule first met at step {first}) {'; '.join(conv['reasons'])}", flush=True)
    return runs


def score(runs: dict, images: np.ndarray, ids: np.ndarray, fpr: float, counts: np.ndarray
          ) -> tuple[dict, dict, float]:
    """TPR at ``fpr`` (full set) and per identity resample, per run; evaluation seconds per
    run (embedding + all pairs + bootstrap)."""
    full, boot, spent = {}, {}, []
    for key, run in runs.items():
        t0 = time.perf_counter()
        feats = embed_images(run["model"], images)
        i, j, s = all_pair_scores(feats)
        pairs = (i.numpy(), j.numpy(), s.numpy())
        full[key] = float(allpairs_tpr_boot(pairs, ids, fpr)[0])
        boot[key] = allpairs_tpr_boot(pairs, ids, fpr, counts)
        spent.append(time.perf_counter() - t0)
    return full, boot, float(np.median(spent))


def compare(full: dict, boot: dict, seeds: list[int]):
    a = 100 * np.array([full["arcface", s] for s in seeds])
    b = 100 * np.array([full["normface", s] for s in seeds])
    ab = 100 * np.stack([boot["arcface", s] for s in seeds])
    bb = 100 * np.stack([boot["normface", s] for s in seeds])
    return compare_paired(a, b, ab, bb, name_a="ArcFace", name_b="NormFace", unit="points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=53, help="53 epochs = 795 steps")
    parser.add_argument("--eval-ids", type=int, default=500)
    parser.add_argument("--per-id", type=int, default=4)
    parser.add_argument("--fpr", type=float, default=1e-3)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--target", type=float, default=1.0, help="half-width, points")
    parser.add_argument("--out", default="results/power_table.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = train_runs(args.seeds, args.epochs)
    cfg = SynthConfig(seed=0)
    sizes = {0.5: args.eval_ids // 2, 1.0: args.eval_ids}
    measured, eval_s = {}, {}
    for k, n_ids in sizes.items():
        aset = splits.all_pairs_set(cfg, n_ids, args.per_id)
        images = cache.cached_render(cfg, aset["items"], size=32, progress=False)["images"]
        ids = np.asarray(aset["items"]["identity"])
        counts = identity_resamples(n_ids, args.boot, seed=1)
        full, boot, eval_s[k] = score(runs, images, ids, args.fpr, counts)
        for n in (1, 3, 5):
            if n <= len(args.seeds):
                c = compare(full, boot, args.seeds[:n])
                measured[n, k] = c
                print(f"measured, {n} seed(s), {n_ids} test ids: {c.sentence()}", flush=True)
    base = measured[max(n for n, _ in measured), 1.0]
    train_min = np.mean([r["train_s"] for r in runs.values()]) / 60
    firsts = [r["first_converged_step"] for r in runs.values()]
    to_conv = None if None in firsts else np.mean(
        [r["train_s"] * r["first_converged_step"] / r["steps"] for r in runs.values()]) / 60
    rows = []
    for n in (1, 3, 5):
        for k in (0.5, 1.0, 2.0, 4.0):
            got = measured.get((n, k))
            predicted = predict_half_width(base, max(n, 2), k) if n > 1 else None
            minutes = n * len(METHODS) * train_min + n * len(METHODS) * eval_s[1.0] * k ** 2 / 60
            rows.append({"seeds": n, "test_scale": k, "test_ids": int(args.eval_ids * k),
                         "measured": None if got is None else got.half_width,
                         "predicted": predicted, "cpu_minutes": minutes})
    print("\nseeds  test ids  half-width measured  predicted  CPU-minutes")
    for r in rows:
        m = "-" if r["measured"] is None else f"±{r['measured']:.2f}"
        p = "-" if r["predicted"] is None else f"±{r['predicted']:.2f}"
        print(f"{r['seeds']:5d}  {r['test_ids']:8d}  {m:>19s}  {p:>9s}  {r['cpu_minutes']:11.1f}")
    ok = [r for r in rows if (r["predicted"] or r["measured"] or np.inf) <= args.target
          and r["seeds"] > 1]
    best = min(ok, key=lambda r: r["cpu_minutes"]) if ok else None
    print(f"\ntraining: {train_min:.1f} CPU-minutes a run (mean of {len(runs)}); the "
          "convergence rule is first met after "
          + ("(not met by every run)" if to_conv is None else f"{to_conv:.1f} CPU-minutes")
          + f"; evaluation {eval_s[1.0]:.1f} s a run at {args.eval_ids} ids")
    print("cheapest design reaching ±{:.1f} points: {}".format(
        args.target, "none on this grid" if best is None else
        f"{best['seeds']} seeds, {best['test_ids']} test ids, {best['cpu_minutes']:.0f} "
        "CPU-minutes"))
    wider = scale_to_resolve(base, args.target, seeds=(5, 10, 20, 40, 80),
                             test_scales=(1, 2, 4, 8))
    if wider is not None:
        n, k = wider
        cost = n * len(METHODS) * (train_min + eval_s[1.0] * k ** 2 / 60)
        print(f"predicted from the variance parts: {n} seeds and {int(args.eval_ids * k)} test "
              f"ids reach ±{predict_half_width(base, n, k):.2f} points, about {cost:.0f} "
              "CPU-minutes")
    else:
        print("predicted from the variance parts: not even 80 seeds and 8x the test set")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "args": vars(args), "rows": rows, "cheapest": best, "train_minutes": train_min,
        "to_resolve": wider,
        "minutes_to_convergence": to_conv,
        "eval_seconds": eval_s,
        "runs": {f"{m}/{s}": {k: v for k, v in r.items() if k != "model"}
                 for (m, s), r in runs.items()},
        "comparisons": {f"{n} seeds, scale {k}": {
            "mean": c.mean, "half_width": c.half_width, "verdict": c.verdict,
            "var_seed": c.var_seed, "var_test_shared": c.var_test_shared,
            "var_test_per_seed": c.var_test_per_seed} for (n, k), c in measured.items()},
    }, indent=1, default=float))


if __name__ == "__main__":
    main()
