"""Published numbers in arclab.reference match the seed documents they are quoted from."""

from __future__ import annotations

import re

import pytest

from arclab import reference
from arclab.book.notebook import repo_root

SEEDS = repo_root().parent / "shared" / "seeds"


def _seed(prefix: str) -> str:
    files = sorted(SEEDS.glob(f"{prefix}_*.txt")) if SEEDS.is_dir() else []
    if not files:
        pytest.skip(f"seed {prefix} not found under {SEEDS}")
    return files[0].read_text()


def _rows(text: str) -> dict[str, list[float]]:
    """Tab-separated slide rows: first cell -> the numbers after it ('-' as None)."""
    out = {}
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) > 2:
            out[cells[0].strip()] = [None if c.strip() == "-" else float(c)
                                     for c in cells[1:] if re.fullmatch(r"\s*(-|[\d.]+)\s*", c)]
    return out


def test_retinaface_ablation_and_speed_rows_are_the_slides():
    rows = _rows(_seed("000"))
    names = {"fpn_context": "FPN+Context", "dcn": "+DCN", "dcn_pts": "+ L_{pts}",
             "dcn_pixel": "+ L_{pixel}", "dcn_pts_pixel": "+ $L_{pts} + L_{pixel}$"}
    for key, label in names.items():
        row = reference.RETINAFACE_ABLATION[key]
        assert rows[label] == [row["easy"], row["medium"], row["hard"], row["map"]], key
    speed = {"resnet152_gpu": "ResNet-152 (GPU)", "mobilenet0.25_gpu": "MobileNet-0.25 (GPU)",
             "mobilenet0.25_cpu_multi": "MobileNet-0.25 (CPU-m)",
             "mobilenet0.25_cpu_1": "MobileNet-0.25 (CPU-1)",
             "mobilenet0.25_arm": "MobileNet-0.25 (ARM)"}
    for key, label in speed.items():
        row = reference.RETINAFACE_SPEED_MS[key]
        assert rows[label] == [row["vga"], row["hd"], row["4k"]], key
