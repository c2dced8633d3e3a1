"""Time to the first batch and images/s from a 100,000-record ``train.rec``: the DataLoader path
(:func:`arclab.train.batches.step_batches`) against the path arclab had before, measured in the
same run.

The file (written to a temp folder): an insightface-style header record 0, ``--records``
JPEG images of ``--size`` px (``--classes`` identities, float labels so that the old path keeps
them all), then one identity record per class, with its ``.idx``; a second ``.idx`` without
key 0 gives the same file without a header record.

- *old*: the reader reads every record's payload to keep flag 0, then every label again (two
  passes before step 1); batches gathered item by item in the training process (each item
  read twice: header, then image);
- *new, header*: the image range and classes from record 0: one record read before step 1;
  batches from a DataLoader with ``--workers`` worker processes decoding the JPEGs;
- *new, no header*: one pass over the record headers (36 bytes each) before step 1;
- *new, 0 workers*: the header file, decoded in the training process (the loader's overhead).

Time to the first batch: from opening the file to the first step's batch in hand (what precedes
step 1, the model aside). Images/s: over the next ``--steps`` batches. The records read before
step 1 are counted (payload reads; header reads). The page cache is warm for every path
(the file was just written). Alternating ``--rounds``; the best of each is printed.

    python benchmarks/recordio_first_step.py [--records 100000] [--size 32] [--batch 128]
                                             [--steps 40] [--workers N] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arclab.data.recordio import RecordIOReader, RecordIOWriter
from arclab.train import TrainConfig
from arclab.train.batches import default_workers, step_batches
from arclab.train.sources import build_dataset


def write_rec(folder: Path, n: int, classes: int, size: int) -> dict:
    """The test file; returns the data sections (with and without the header record)."""
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(256):  # distinct JPEGs, reused: writing stays quick
        img = np.clip(rng.integers(0, 256, (1, 1, 3)) + rng.integers(-30, 30, (size, size, 3)),
                      0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
    per = n // classes
    rec, idx = folder / "train.rec", folder / "train.idx"
    with RecordIOWriter(rec, idx) as w:
        w.write(b"", [n + 1.0, n + 1.0 + classes])
        for i in range(n):
            w.write(encoded[i % 256], float(min(i // per, classes - 1)))
        for c in range(classes):
            w.write(b"", [1.0 + c * per, 1.0 + min((c + 1) * per, n)])
    plain = folder / "no_header.idx"
    plain.write_text("".join(idx.read_text().splitlines(keepends=True)[1:]))
    return {"header": {"source": "recordio", "rec": str(rec), "idx": str(idx)},
            "no header": {"source": "recordio", "rec": str(rec), "idx": str(plain)}}


class Counter:
    """Counts RecordIOReader.read calls and the records RecordIOReader.heads reads."""

    def __init__(self) -> None:
        self.reads = self.heads = 0
        self._read, self._heads = RecordIOReader.read, RecordIOReader.heads
        counter = self

        def read(self, key):
            counter.reads += 1
            return counter._read(self, key)

        def heads(self, keys=None):
            out = counter._heads(self, keys)
            counter.heads += len(out["key"])
            return out

        RecordIOReader.read, RecordIOReader.heads = read, heads

    def close(self) -> None:
        RecordIOReader.read, RecordIOReader.heads = self._read, self._heads


def old_prepare(data: dict) -> tuple[RecordIOReader, list[int]]:
    """The set before: every payload read to keep flag 0, then every label read again."""
    reader = RecordIOReader(data["rec"], data["idx"])
    keys = [k for k in reader.keys() if reader.read(k)[0]["flag"] == 0]
    labels = {int(reader.read(k)[0]["label"]) for k in keys}
    assert min(labels) >= 0
    return reader, keys


def old_batches(prepared: tuple[RecordIOReader, list[int]], cfg: TrainConfig, steps: int):
    """The batches before: item by item in this process, each record read twice."""
    reader, keys = prepared
    for step in range(steps):
        order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(step))
        torch.manual_seed(step)
        items = []
        for i in order[:cfg.batch_size].tolist():
            label = int(reader.read(keys[i])[0]["label"])
            img = torch.from_numpy(reader.read_image(keys[i])).permute(2, 0, 1).float()
            img = img / 127.5 - 1
            items.append((img.flip(2) if torch.rand(()) < 0.5 else img, label))
        yield torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def measure(prepare, batches, steps: int, batch: int) -> dict:
    """Time to the first batch and images/s of ``batches(prepare())``; the records read
    while preparing (in this process, before any batch is asked for)."""
    counter = Counter()
    start = time.perf_counter()
    try:
        batches = batches(prepare())
        before = (counter.reads, counter.heads)
        next(batches)
        first = time.perf_counter() - start
        t0 = time.perf_counter()
        for _ in range(steps):
            next(batches)
        rate = steps * batch / (time.perf_counter() - t0)
        batches.close()
    finally:
        counter.close()
    return {"first_s": first, "images_per_s": rate, "reads": before[0], "head_reads": before[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cfg = TrainConfig(input_size=args.size, batch_size=args.batch, epochs=1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = write_rec(Path(tmp), args.records, args.classes, args.size)
        size_mb = Path(data["header"]["rec"]).stat().st_size / 2**20
        print(f"wrote {args.records:,} records ({size_mb:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s; batch {args.batch}, {args.steps} steps timed, "
              f"{args.workers} workers")
        n = args.steps + 1

        def new(which: str, workers: int):
            return (lambda: build_dataset(data[which] | {"workers": workers}, args.size)[0],
                    lambda dataset: step_batches(dataset, cfg, 0, n))

        paths = {"old": (lambda: old_prepare(data["header"]),
                         lambda prepared: old_batches(prepared, cfg, n)),
                 f"new, header, {args.workers} workers": new("header", args.workers),
                 f"new, no header, {args.workers} workers": new("no header", args.workers),
                 "new, header, 0 workers": new("header", 0)}
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, (prepare, batches) in paths.items():
                m = measure(prepare, batches, args.steps, args.batch)
                if name not in best or m["first_s"] < best[name]["first_s"]:
                    best[name] = best.get(name, {}) | {k: m[k] for k in m if k != "images_per_s"}
                best[name]["images_per_s"] = max(best[name].get("images_per_s", 0),
                                                 m["images_per_s"])
    old = best["old"]
    print(f"{'path':34} {'first batch s':>13} {'x faster':>9} {'images/s':>9} {'x old':>6} "
          f"{'reads before step 1':>28}")
    for name, m in best.items():
        print(f"{name:34} {m['first_s']:13.3f} {old['first_s'] / m['first_s']:9.1f} "
              f"{m['images_per_s']:9.0f} {m['images_per_s'] / old['images_per_s']:6.2f} "
              f"{m['reads']:>10,} whole, {m['head_reads']:>7,} headers")


if __name__ == "__main__":
    main()
