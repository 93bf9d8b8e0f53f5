"""The KD-term registry and the options beyond Chen et al.: each term's value against a
hand computation, gradients to the student only, absent when off, weight inheritance,
diagnostics, warm-up, and the bounded ROI regression box by box."""
import dataclasses
import os
import re
from typing import Tuple

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from kd_det.losses import feature_imitation_loss, standardize_channels
from kd_det.modeling.diagnostics import term_name
from kd_det.modeling.kd_terms import (
    KD_TERM_REGISTRY,
    Hint,
    KDStep,
    ROIBoundedRegression,
    build_kd_terms,
    gt_box_masks,
    inherit_from_teacher,
)

from ..detection_utils import ROOT, active_terms, fixed_batch, kd_cfg, tiny_rcnn_cfg


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return kd_cfg(tmp_path_factory.mktemp("teacher"))


def _losses(model, batch, it=0):
    with EventStorage(it) as storage:
        return model(batch), storage


def test_registry_decides_the_active_terms(cfg):
    assert {"RPNSoftLabel", "RPNBoundedRegression", "ROISoftLabel", "ROIBoundedRegression",
            "Hint"} <= set(dict(KD_TERM_REGISTRY))
    assert active_terms(cfg) == ["loss_rpn_kd_cls", "loss_rpn_kd_reg", "loss_roi_kd_cls",
                                    "loss_roi_kd_reg", "loss_hint"]
    c = cfg.clone()
    c.KD.RPN.MU, c.KD.HINT.WEIGHT = 1.0, 0.0
    assert active_terms(c) == ["loss_rpn_kd_reg", "loss_roi_kd_cls", "loss_roi_kd_reg"]
    hint = [t for t in build_kd_terms(cfg) if isinstance(t, Hint)][0]
    assert hint.weight == 0.5 and hint.pairs[0] == ("p2", "p2") and hint.loss == "mse"


def test_pkd_loss_is_one_minus_pearson_correlation():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 5, 4, generator=g) * 7 + 3
    t = 0.5 * a + torch.randn(2, 3, 5, 4, generator=g)
    loss = feature_imitation_loss(a, t, normalize="pkd")
    # Per channel over (N, H, W): Pearson r; standardised MSE / 2 = 1 - r.
    an = a.permute(1, 0, 2, 3).reshape(3, -1).numpy()
    tn = t.permute(1, 0, 2, 3).reshape(3, -1).numpy()
    r = np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(an, tn)])
    assert loss.item() == pytest.approx(1 - r, abs=1e-4)
    # Scale-free: multiplying the student map changes nothing.
    assert feature_imitation_loss(10 * a, t, "pkd").item() == pytest.approx(loss.item(), 1e-4)
    s = standardize_channels(a)
    assert s.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_masked_imitation_by_hand():
    a = torch.zeros(1, 2, 2, 2)
    t = torch.zeros(1, 2, 2, 2)
    a[0, :, 0, 0] = torch.tensor([1.0, 3.0])  # fg cell: squared error 1 + 9 = 10
    a[0, :, 1, 1] = torch.tensor([2.0, 0.0])  # bg cell: 4
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # fg: 10 / (1 cell * 2 channels); bg: 4 / (3 cells * 2 channels)
    assert feature_imitation_loss(a, t, mask=mask).item() == pytest.approx(5.0)
    got = feature_imitation_loss(a, t, mask=mask, bg_weight=0.5).item()
    assert got == pytest.approx(5.0 + 0.5 * 4 / 6)
    assert feature_imitation_loss(a, t).item() == pytest.approx(14 / 8)


def test_gt_box_masks_cover_the_cells_inside_boxes():
    inst = Instances((32, 32))
    inst.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 16.0, 8.0]]))
    empty = Instances((32, 32))
    empty.gt_boxes = Boxes(torch.zeros(0, 4))
    m = gt_box_masks([inst, empty], (32, 32), (4, 4))  # stride 8: centres 4, 12, 20, 28
    expected = torch.zeros(4, 4)
    expected[0, :2] = 1
    assert m.shape == (2, 1, 4, 4)
    assert torch.equal(m[0, 0], expected) and m[1].sum() == 0


@pytest.mark.parametrize("opts", [
    {"LOSS": "pkd"},
    {"MASK": "gt"},
    {"LOSS": "pkd", "MASK": "gt", "MASK_BG_WEIGHT": 0.1},
])
def test_hint_options_train_the_student_and_adapters_only(cfg, opts):
    c = cfg.clone()
    for k, v in opts.items():
        c.KD.HINT[k] = v
    c.KD.RPN.ENABLED = c.KD.ROI.ENABLED = False
    model = build_model(c).train()
    losses, _ = _losses(model, fixed_batch())
    assert torch.isfinite(losses["loss_hint"]) and losses["loss_hint"].item() > 0
    losses["loss_hint"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    for name, p in model.adapters.named_parameters():
        # PKD standardises the adapted map, so the adapter's bias cancels: zero gradient.
        cancels = name.endswith("bias") and opts.get("LOSS") == "pkd"
        assert p.grad is not None, name
        assert (p.grad.abs().max() < 1e-6) if cancels else (p.grad.abs().sum() > 0), name
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.student.backbone.parameters())


def test_hint_term_matches_hand_computation(cfg):
    """loss_hint = gamma * mean over pairs of the masked PKD loss, recomputed here from
    the adapters and both models' features."""
    c = cfg.clone()
    c.KD.HINT.LOSS, c.KD.HINT.MASK, c.KD.HINT.MASK_BG_WEIGHT = "pkd", "gt", 0.25
    c.KD.HINT.STUDENT_FEATURES = c.KD.HINT.TEACHER_FEATURES = ["p3", "p4"]
    model = build_model(c).train()
    batch = fixed_batch()
    torch.manual_seed(0)
    losses, _ = _losses(model, batch)
    images = model.student.preprocess_image(batch)
    with torch.no_grad():
        s_feats = model.student.backbone(images.tensor)
        t_feats = model.teacher.backbone(images.tensor)
    gts = [x["instances"] for x in batch]
    expected = 0.0
    for f in ("p3", "p4"):
        v = model.adapters.adapters[f"{f}_to_{f}"](s_feats[f])
        z = t_feats[f]
        mask = gt_box_masks(gts, tuple(images.tensor.shape[-2:]), tuple(z.shape[-2:]))
        vn, zn = standardize_channels(v), standardize_channels(z)
        err = (vn - zn).pow(2).sum(1, keepdim=True)
        fg = (err * mask).sum() / (mask.sum() * z.shape[1])
        bg = (err * (1 - mask)).sum() / ((1 - mask).sum() * z.shape[1])
        expected += 0.5 * (fg + 0.25 * bg)
    assert losses["loss_hint"].item() == pytest.approx(0.5 * expected.item() / 2, rel=1e-4)


def test_warmup_scales_every_kd_term(cfg):
    c = cfg.clone()
    c.KD.WARMUP_ITERS = 4
    model = build_model(c).train()
    torch.manual_seed(0)
    early, _ = _losses(model, fixed_batch(), it=0)
    torch.manual_seed(0)
    late, _ = _losses(model, fixed_batch(), it=10)
    for k in active_terms(c):
        assert early[k].item() == pytest.approx(late[k].item() / 4, rel=1e-5), k
    for k in ("loss_cls", "loss_rpn_cls", "loss_box_reg"):
        assert early[k].item() == pytest.approx(late[k].item(), rel=1e-5), k


def test_diagnostics_log_grad_norms_bound_activity_and_hint_per_level(cfg):
    c = cfg.clone()
    c.KD.DIAGNOSTICS_PERIOD = 5
    model = build_model(c).train()
    _, storage = _losses(model, fixed_batch(), it=5)
    diag = {k: v for k, (v, _) in storage.latest().items() if k.startswith("kd_diag/")}
    for k in active_terms(c) + ["loss_cls", "task_total"]:
        assert diag[f"kd_diag/grad_norm/{term_name(k)}"] >= 0, k
    assert not any("loss" in k for k in diag)  # not listed among the losses on the console
    assert diag["kd_diag/grad_norm/hint"] > 0
    assert diag["kd_diag/grad_ratio/hint"] == pytest.approx(
        diag["kd_diag/grad_norm/hint"] / diag["kd_diag/grad_norm/task_total"])
    for k in ("rpn_bound_active_frac", "roi_bound_active_frac"):
        assert 0 <= diag[f"kd_diag/{k}"] <= 1
    assert {f"kd_diag/hint/{f}_to_{f}" for f in ("p2", "p3", "p4", "p5", "p6")} <= set(diag)
    _, storage = _losses(model, fixed_batch(), it=6)  # off-period: nothing logged
    assert not any(k.startswith("kd_diag/") for k in storage.latest())


def test_inheritance_copies_exactly_the_matching_modules(tmp_path):
    # Teacher: FPN 64 channels, box head FC 96; student: FPN 32, FC 64. Only the ResNet
    # bottom-up (same depth and widths) matches.
    c = kd_cfg(tmp_path)
    c.KD.STUDENT.INIT_FROM_TEACHER = True
    model = build_model(c)
    s, t = model.student.state_dict(), model.teacher.state_dict()
    same = {k for k in s if k in t and torch.equal(s[k], t[k])}
    bottom_up = {k for k in s if k.startswith("backbone.bottom_up.")}
    assert bottom_up and bottom_up <= same
    assert not any(k.startswith(("backbone.fpn", "proposal_generator", "roi_heads"))
                   for k in same if s[k].numel() > 1 and s[k].abs().sum() > 0)
    copied = inherit_from_teacher(model.student, model.teacher)
    assert all(n.startswith("backbone.bottom_up") for n in copied)
    assert "backbone.bottom_up.stem.conv1" in copied
    # Anchors (non-persistent buffers) are never copied.
    assert not any("anchor_generator" in n for n in copied)


def test_inheritance_of_an_identical_architecture_copies_everything(tmp_path):
    from kd_det.modeling.teacher import build_teacher, build_teacher_cfg

    teacher = build_teacher(build_teacher_cfg(kd_cfg(tmp_path, fpn_channels=32)))
    student = build_model(tiny_rcnn_cfg(fpn_channels=32, fc_dim=96))  # the teacher's shapes
    assert inherit_from_teacher(student, teacher)
    for k, v in student.state_dict().items():
        assert torch.equal(v, teacher.state_dict()[k]), k


@pytest.mark.parametrize("key,value,match", [
    ("KD.HINT.LOSS", "cosine", "KD.HINT.LOSS"),
    ("KD.HINT.MASK", "boxes", "KD.HINT.MASK"),
    ("KD.HINT.WEIGHT", float("inf"), "KD.HINT.WEIGHT"),
    ("KD.ROI.TEMPERATURE", float("inf"), "KD.ROI.TEMPERATURE"),
    ("KD.RPN.TEMPERATURE", 1e-30, "KD.RPN.TEMPERATURE"),
    ("KD.ROI.REG_WEIGHT", 1e30, "KD.ROI.REG_WEIGHT"),
    ("KD.WARMUP_ITERS", -1, "KD.WARMUP_ITERS"),
])
def test_bad_new_values_are_refused_naming_the_key(cfg, key, value, match):
    c = cfg.clone()
    c.merge_from_list([key, value])
    with pytest.raises(ValueError, match=match):
        build_model(c)


def test_roi_bounded_regression_box_by_box():
    """4 ROIs, 2 classes, class-specific deltas; ROI 3 is background."""
    props = Instances((100, 100))
    props.proposal_boxes = Boxes(torch.tensor([[10.0, 10, 30, 30]] * 4))
    props.gt_boxes = Boxes(torch.tensor([[10.0, 10, 30, 30]] * 4))  # targets y = 0
    props.gt_classes = torch.tensor([0, 1, 1, 2])
    s = torch.zeros(4, 8)
    t = torch.zeros(4, 8)
    s[0, 0:4] = torch.tensor([1.0, 0, 0, 0])   # e_s = 1, e_t = 0.25 -> counted: 1
    t[0, 0:4] = torch.tensor([0.5, 0, 0, 0])
    s[1, 4:8] = torch.tensor([0.5, 0, 0, 0])   # e_s = .25, e_t = 1 -> teacher worse: 0
    t[1, 4:8] = torch.tensor([1.0, 0, 0, 0])
    s[2, 4:8] = torch.tensor([1.0, 0, 0, 0])   # e_s = 1, e_t = 1.1: 1 + m(0.2) > 1.1 -> 1
    t[2, 4:8] = torch.tensor([1.1 ** 0.5, 0, 0, 0])
    s[3] = 5.0                                 # background ROI: never counted
    s[1, 0:4] = 9.0                            # deltas of a non-gt class: never counted

    from types import SimpleNamespace as NS

    from detectron2.modeling.box_regression import Box2BoxTransform
    heads = NS(num_classes=2, box_predictor=NS(
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))))
    model = NS(roi_heads=heads)
    step = KDStep(student=model, teacher=model, image_size=(100, 100), gt_instances=[],
                  features={}, rpn=None, roi=NS(proposals=[props], deltas=s),
                  t=NS(box_deltas=t, class_map=None))
    term = ROIBoundedRegression("bounded", weight=0.5, margin=0.2)
    assert term(step).item() == pytest.approx(0.5 * (1.0 + 0.0 + 1.0) / 4)
    assert term.diagnostics(step)["roi_bound_active_frac"].item() == pytest.approx(2 / 3)
    term = ROIBoundedRegression("bounded", weight=0.5, margin=0.05)  # ROI 2: 1.05 > 1.1 false
    assert term(step).item() == pytest.approx(0.5 * 1.0 / 4)


# Values a setting of each field type must refuse; a new term's fields are checked by the
# test below once their type is listed here.
BAD_VALUES = {
    float: (-1.0, float("inf"), float("nan"), "abc", True, None),
    str: ("bogus", None),
    Tuple[Tuple[str, str], ...]: ((), [("p2",)], [("p2", 3)], "p2"),
}


@pytest.mark.parametrize("term,field", [(t, f.name) for _, t in KD_TERM_REGISTRY
                                        for f in dataclasses.fields(t)],
                         ids=lambda x: getattr(x, "__name__", x))
def test_every_setting_is_checked_when_the_term_is_built(term, field):
    """Each field of each registered term refuses a bad value at construction, naming its
    yacs key and LazyConfig path: the message both entry points give."""
    kind = {f.name: f.type for f in dataclasses.fields(term)}[field]
    assert kind in BAD_VALUES, f"{term.__name__}.{field}: list bad values of {kind} here"
    for bad in BAD_VALUES[kind]:
        with pytest.raises(ValueError, match=re.escape(term().setting(field)) + " must be "):
            term(**{field: bad})


def test_each_term_is_named_as_in_the_lazyconfig_recipe():
    """lazy_name, which the refusals cite, is the term's name in model.kd_terms."""
    recipe = LazyConfig.load(os.path.join(ROOT, "configs", "common", "kd_chen2017.py"))
    named = {k: v._target_ for k, v in recipe.kd_terms.items() if k != "_target_"}
    assert named == {t.lazy_name: f"{t.__module__}.{t.__qualname__}"
                     for _, t in KD_TERM_REGISTRY}


def test_yacs_hint_features_must_pair_up(cfg):
    c = cfg.clone()
    c.KD.HINT.TEACHER_FEATURES = ["p2", "p3"]
    with pytest.raises(ValueError, match="KD.HINT.STUDENT_FEATURES/TEACHER_FEATURES need the "
                                         "same length"):
        build_kd_terms(c)


def test_a_term_switched_off_in_yacs_is_still_checked(cfg):
    """A weight of 0 or mu of 1 turns a term off; a negative weight or mu above 1 is not a
    way of turning it off but an error."""
    for key, value, match in (("KD.HINT.WEIGHT", -1.0, "KD.HINT.WEIGHT"),
                              ("KD.RPN.MU", 1.5, "KD.RPN.MU"),
                              ("KD.ROI.REG_WEIGHT", -0.5, "KD.ROI.REG_WEIGHT")):
        c = cfg.clone()
        c.merge_from_list([key, value])
        with pytest.raises(ValueError, match=match):
            build_kd_terms(c)


def test_pair_by_stride_finds_each_student_features_teacher_feature():
    """A teacher whose outputs are named otherwise: each student feature is paired with
    the teacher feature of its stride (x 2 for a student at half resolution); a stride the
    teacher lacks, or two teachers that name it differently, are refused."""
    from detectron2.layers import ShapeSpec

    student = {f"p{i}": ShapeSpec(channels=32, stride=2 ** i) for i in range(2, 7)}
    teacher = {f"t{i}": ShapeSpec(channels=128, stride=2 ** i) for i in range(3, 8)}
    hint = Hint(pairs=("p3", "p4"), pair_by="stride")
    assert hint.pairs == (("p3", ""), ("p4", ""))
    assert hint.bind(student, [teacher]).pairs == (("p3", "t3"), ("p4", "t4"))
    assert hint.bind(student, [teacher], shift=1).pairs == (("p3", "t4"), ("p4", "t5"))
    assert Hint().bind(student, [teacher]) == Hint()  # pairs by name: as given
    with pytest.raises(ValueError, match=r"'p2' \(stride 4\) needs one teacher feature of "
                                         r"stride 4 in every teacher, found none"):
        Hint(pairs=("p2",), pair_by="stride").bind(student, [teacher])
    other = {k.replace("t", "q"): v for k, v in teacher.items()}
    with pytest.raises(ValueError, match=r"found \['q3', 't3'\]"):
        hint.bind(student, [teacher, other])
    # a second teacher with the name at another stride only
    shifted = {f"t{i}": ShapeSpec(channels=128, stride=2 ** (i + 1)) for i in range(3, 8)}
    with pytest.raises(ValueError, match=r"'p3' \(stride 8\) needs one teacher feature"):
        hint.bind(student, [teacher, shifted])
    with pytest.raises(ValueError, match="'stride' finds the teacher features itself"):
        Hint(pairs=(("p3", "t3"),), pair_by="stride")


def test_yacs_pair_by_stride_on_a_half_resolution_student(cfg):
    c = cfg.clone()
    c.KD.HINT.PAIR_BY = "stride"
    with pytest.raises(ValueError, match=r"TEACHER_FEATURES must be \[\] with KD.HINT.PAIR_BY"):
        build_kd_terms(c)
    c.KD.HINT.TEACHER_FEATURES = []
    c.KD.STUDENT.INPUT_SCALE = 0.5
    with pytest.raises(ValueError, match=r"student's 'p6' \(stride 64\) needs one teacher "
                                         "feature of stride 128"):
        build_model(c)
    c.KD.HINT.STUDENT_FEATURES = ["p2", "p3", "p4", "p5"]
    (hint,) = [t for t in build_model(c).kd_terms if isinstance(t, Hint)]
    assert hint.pairs == (("p2", "p3"), ("p3", "p4"), ("p4", "p5"), ("p5", "p6"))
