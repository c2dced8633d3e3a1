"""Knowledge distillation (arclab.losses.distill, train(teacher=...), the spec's distill section)
and the challenge's track rules (check_track / track_margins) at each limit's edge."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from arclab.losses.distill import feature_distillation_loss
from arclab.losses.heads import make_head
from arclab.losses.margins import MarginLoss
from arclab.models import TRACK_LIMITS, check_track, count_flops, get_model, track_margins
from arclab.train import learning_rate, step_batch, train
from arclab.train.sources import build_dataset
from arclab.train.spec import load_spec, run_dir, run_spec

# --------------------------------------------------------------------------- the loss


def test_feature_loss_is_the_mean_of_two_minus_two_cosines_and_its_gradient_is_exact():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(7, 5, generator=gen, dtype=torch.float64) * 3
    t = torch.randn(7, 5, generator=gen, dtype=torch.float64) * 0.2
    expected = (2 - 2 * nn.functional.cosine_similarity(s, t, dim=1)).mean()
    assert feature_distillation_loss(s, t).item() == pytest.approx(expected.item(), abs=1e-12)
    # scale-free in both arguments, zero only for the same directions
    assert feature_distillation_loss(5 * s, t / 9).item() == pytest.approx(expected.item())
    assert feature_distillation_loss(s, 2 * s).item() == pytest.approx(0, abs=1e-12)
    assert feature_distillation_loss(s, -s).item() == pytest.approx(4)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: feature_distillation_loss(a, t), (s,))
    tt = t.clone().requires_grad_(True)
    feature_distillation_loss(s, tt).backward()
    assert tt.grad is None  # the teacher is a constant


@pytest.mark.parametrize("s, t, message", [
    (torch.ones(3, 4), torch.ones(3, 5), "must both be"),
    (torch.ones(4), torch.ones(4), "must both be"),
    (torch.zeros(2, 3), torch.ones(2, 3), "student features must be finite and nonzero"),
    (torch.ones(2, 3), torch.full((2, 3), float("nan")), "teacher features must be finite"),
])
def test_feature_loss_refuses_bad_input(s, t, message):
    with pytest.raises(ValueError, match=message):
        feature_distillation_loss(s, t)


# --------------------------------------------------------------------------- training

SPEC = {"train": {"backbone": "r18", "embedding_size": 16, "input_size": 16, "batch_size": 8,
                  "epochs": 2, "s": 16.0, "lr": 0.05, "checkpoint_every": 50},
        "data": {"source": "synthfaces", "n_identities": 6, "n_per_identity": 4}}


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    spec = load_spec({**SPEC, "train": {**SPEC["train"], "seed": 7}})
    return run_spec(spec, tmp_path_factory.mktemp("teacher"), progress=False)


def test_one_distilled_step_is_sgd_on_margin_plus_weighted_feature_loss(teacher_run, tmp_path):
    """With the copied, frozen head: the student's first SGD step (no momentum, no decay)
    equals a step on margin loss + λ · feature loss computed here from scratch."""
    cfg = load_spec({**SPEC, "train": {**SPEC["train"], "momentum": 0.0,
                                       "weight_decay": 0.0}})["train"]
    dataset, n = build_dataset(SPEC["data"] | {"source": "synthfaces"}, 16, progress=False)
    lam = 3.0
    teacher = {"model": copy.deepcopy(teacher_run["model"]), "weight": lam, "copy_head": True,
               "head": teacher_run["head"].state_dict()}
    out = train(cfg, dataset, n, tmp_path, teacher=teacher, max_steps=1, progress=False)

    torch.manual_seed(cfg.seed)  # what train() builds before anything else
    model = get_model("r18", embedding_size=16, input_size=16)
    head = make_head(cfg.margin, 16, n)
    head.weight.data.copy_(teacher_run["head"].weight.data)
    x, y = step_batch(dataset, cfg, 0)
    model.train()
    emb = model(x)
    margin = MarginLoss(cfg.margin, s=cfg.s)(head(emb), y)
    with torch.no_grad():
        target = teacher_run["model"].eval()(x)
    objective = margin + lam * (2 - 2 * nn.functional.cosine_similarity(emb, target)).mean()
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(objective, [p for _, p in named])
    lr = learning_rate(cfg, 0, out["total_steps"])
    trained = dict(out["model"].named_parameters())
    for (name, p0), g in zip(named, grads, strict=True):
        torch.testing.assert_close(trained[name].detach(), p0.detach() - lr * g, rtol=1e-4,
                                   atol=1e-6, msg=name)
    assert torch.equal(out["head"].weight, teacher_run["head"].weight)  # copied and frozen
    assert out["losses"][0] == pytest.approx(margin.item(), rel=1e-5)  # the logged loss
    assert out["distill_losses"][0] == pytest.approx(
        (objective - margin).item() / lam, rel=1e-5)


def test_the_feature_term_pulls_the_student_to_the_teacher(teacher_run, tmp_path):
    """Same student, same batches: with λ = 0 the term is only logged, with λ = 20 it is
    trained, and it ends lower; λ = 0 without copy_head trains exactly the plain run."""
    dataset, n = build_dataset(SPEC["data"] | {"source": "synthfaces"}, 16, progress=False)
    cfg = load_spec(SPEC)["train"]
    runs = {}
    for lam in (0.0, 20.0):
        teacher = {"model": copy.deepcopy(teacher_run["model"]), "weight": lam}
        runs[lam] = train(cfg, dataset, n, tmp_path / str(lam), teacher=teacher,
                          progress=False)
    plain = train(cfg, dataset, n, tmp_path / "plain", progress=False)
    assert runs[0.0]["losses"] == plain["losses"]
    assert runs[0.0]["distill_losses"][0] == pytest.approx(runs[20.0]["distill_losses"][0])
    assert runs[20.0]["distill_losses"][-1] < 0.7 * runs[0.0]["distill_losses"][-1]
    assert not torch.equal(plain["head"].weight, teacher_run["head"].weight)


def test_distill_spec_keys_the_run_by_teacher_and_reads_checkpoints_as_untrusted(
        teacher_run, tmp_path):
    teacher_spec = {**SPEC, "train": {**SPEC["train"], "seed": 7}}
    student = {**SPEC, "train": {**SPEC["train"], "epochs": 1}}
    by_spec = load_spec({**student, "distill": {"teacher": teacher_spec, "weight": 2.0,
                                                "copy_head": True}})
    other_weight = load_spec({**student, "distill": {"teacher": teacher_spec, "weight": 1.0,
                                                     "copy_head": True}})
    other_teacher = load_spec({**student, "distill": {
        "teacher": {**teacher_spec, "train": {**teacher_spec["train"], "seed": 8}},
        "weight": 2.0, "copy_head": True}})
    plain = load_spec(student)
    assert len({run_dir(s) for s in (by_spec, other_weight, other_teacher, plain)}) == 4
    assert "distill" not in plain  # plain runs keep the hash they always had

    ckpt = teacher_run["out_dir"] / "checkpoint.pt"
    by_file = load_spec({**student, "distill": {"checkpoint": str(ckpt), "weight": 2.0,
                                                "copy_head": True}})
    # the same teacher weights through either door train the same student
    a = run_spec(by_spec, tmp_path / "a", progress=False)
    b = run_spec(by_file, tmp_path / "b", progress=False)
    assert a["losses"] == b["losses"] and a["distill_losses"] == b["distill_losses"]

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint torch.load"):
        run_spec(load_spec({**student, "distill": {"checkpoint": str(bad)}}), tmp_path / "c",
                 progress=False)
    torch.save({"config": {"backbone": "mbf"}, "model": {}}, bad)
    with pytest.raises(ValueError, match=r"do not fit the backbone its config names \(mbf\)"):
        run_spec(load_spec({**student, "distill": {"checkpoint": str(bad)}}), tmp_path / "d",
                 progress=False)


@pytest.mark.parametrize("distill, message", [
    ({"weight": 1.0}, "exactly one of 'teacher'"),
    ({"teacher": SPEC, "checkpoint": "x"}, "exactly one of 'teacher'"),
    ({"teacher": SPEC, "weight": -1}, "distill.weight must be a finite number >= 0"),
    ({"teacher": SPEC, "copy_head": "yes"}, "distill.copy_head must be true or false"),
    ({"teacher": SPEC, "temperature": 4}, r"unknown: \['temperature'\]"),
    ({"checkpoint": "/nonexistent.pt"}, "is not a file"),
    ({"teacher": {**SPEC, "train": {**SPEC["train"], "input_size": 32}}},
     "teacher trains at 32 px, the student at 16 px"),
])
def test_bad_distill_sections_fail_naming_the_key(distill, message):
    with pytest.raises(ValueError, match=message):
        load_spec({**SPEC, "distill": distill})


def test_train_refuses_teachers_that_do_not_fit(teacher_run, tmp_path):
    dataset, n = build_dataset(SPEC["data"] | {"source": "synthfaces"}, 16, progress=False)
    cfg = load_spec(SPEC)["train"]
    wide = get_model("r18", embedding_size=32, input_size=16)
    with pytest.raises(ValueError, match=r"to \(32,\) features, the student to \(16,\)"):
        train(cfg, dataset, n, tmp_path / "a", teacher={"model": wide}, progress=False)
    with pytest.raises(ValueError, match="the teacher's classifier is"):
        train(cfg, dataset, n, tmp_path / "b", progress=False, teacher={
            "model": teacher_run["model"], "copy_head": True,
            "head": {"weight": torch.zeros(3, 16)}})
    soft = load_spec({**SPEC, "train": {**SPEC["train"], "margin": "softmax"}})["train"]
    with pytest.raises(ValueError, match="distillation needs fc 'dense' and a cosine margin"):
        train(soft, dataset, n, tmp_path / "c", teacher={"model": teacher_run["model"]},
              progress=False)


# --------------------------------------------------------------------------- track rules


class _Probe(nn.Module):
    """A 1×1 conv (1 -> C, no bias) on an H × W image, global pooling, an FC (C -> E, bias),
    plus ``extra`` parameters that cost no FLOPs: FLOPs = H·W·C + 2·C·E exactly, params =
    C + C·E + E + extra, embedding E."""

    def __init__(self, c: int, e: int, extra: int = 0, dtype=torch.float32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, c, 1, bias=False, dtype=dtype)
        self.fc = nn.Linear(c, e, dtype=dtype)
        self.extra = nn.Parameter(torch.empty(extra, dtype=dtype))

    def forward(self, x):
        return self.fc(self.conv(x.to(self.conv.weight.dtype)).mean((2, 3)))


def _counts(h: int, w: int, c: int, e: int, extra: int = 0, dtype=torch.float32) -> dict:
    with torch.device("meta"):
        return count_flops(_Probe(c, e, extra, dtype), (1, h, w))


def _flops_probe(target: int, e: int = 100, c: int = 500) -> tuple[int, int, int, int]:
    """(h, w, c, e) with FLOPs exactly ``target`` (h·w·c = target − 2·c·e)."""
    rest = target - 2 * c * e
    assert rest % c == 0
    hw = rest // c
    h = next(d for d in range(int(hw**0.5), 0, -1) if hw % d == 0)
    return h, hw // h, c, e


@pytest.mark.parametrize("track, limit", [("light", 1e9), ("large", 30e9)])
def test_flops_limit_is_inclusive_and_one_fc_unit_more_fails(track, limit):
    h, w, c, e = _flops_probe(int(limit))
    at = _counts(h, w, c, e)
    assert at["flops"] == limit and at["macs"] == h * w * c + c * e
    assert check_track(at)[track]
    over = _counts(h, w, c, e + 1)  # + 2·C = 1000 FLOPs
    assert over["flops"] == limit + 2 * c
    assert not check_track(over)[track]
    assert track_margins(over)[track]["flops"] == pytest.approx(limit / (limit + 1000),
                                                                rel=1e-15)


def test_size_limit_is_twenty_million_bytes_of_fp32_parameters():
    c, e = 8, 16
    base = c + c * e + e
    at = _counts(4, 4, c, e, extra=5_000_000 - base)
    assert at["params"] == 5_000_000 and at["size_mb"] == 20.0
    assert check_track(at) == {"light": True, "large": True}
    over = _counts(4, 4, c, e, extra=5_000_001 - base)
    assert check_track(over) == {"light": False, "large": True}  # no size limit on large


def test_feature_dimension_limit_and_the_fp32_rule():
    assert check_track(_counts(4, 4, 8, 512)) == {"light": True, "large": True}
    assert check_track(_counts(4, 4, 8, 513)) == {"light": False, "large": False}
    half = _counts(4, 4, 8, 256, dtype=torch.float16)
    assert half["fp32"] is False and half["size_mb"] == _counts(4, 4, 8, 256)["size_mb"]
    assert check_track(half) == {"light": False, "large": False}


def test_a_macs_counter_passes_a_model_the_challenge_rejects():
    """y2 at 128 px: 1.22 GFLOPs, but 0.61 G multiply-accumulates, which a counter that calls
    MACs "FLOPs" reports as legal for the light track. The FLOPs come from 112 px scaled by
    the pixel ratio (every layer's output area scales with it), not from this count."""
    with torch.device("meta"):
        at112 = count_flops(get_model("y2", input_size=112), (3, 112, 112))
        at128 = count_flops(get_model("y2", input_size=128), (3, 128, 128))
    assert at128["flops"] == pytest.approx(at112["flops"] * (128 / 112) ** 2, rel=0.02)
    assert 1e9 < at128["flops"] < 2e9 and at128["macs"] < 1e9
    assert check_track(at128) == {"light": False, "large": True}
    assert check_track(at128, convention="macs") == {"light": True, "large": True}
    with pytest.raises(ValueError, match="convention must be 'flops' or 'macs'"):
        check_track(at128, convention="params")


def test_real_backbones_against_the_limits():
    """y2 (the challenge's light baseline) fits the light track at 112 px; r100 only the
    large one; every limit named in TRACK_LIMITS is checked."""
    with torch.device("meta"):
        y2 = count_flops(get_model("y2"), (3, 112, 112))
        r100 = count_flops(get_model("r100"), (3, 112, 112))
    assert check_track(y2) == {"light": True, "large": True}
    assert check_track(r100) == {"light": False, "large": True}
    assert set(track_margins(y2)["light"]) == set(TRACK_LIMITS["light"])
    assert 1 < track_margins(y2)["light"]["flops"] < 1.1  # 931M of 1G
