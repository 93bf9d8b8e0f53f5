"""A student at half the teacher's input resolution (KD.STUDENT.INPUT_SCALE, Chen et al.
Table 2): what the student sees, what the teacher computes for it (levels shifted by one,
ROIs in the teacher's pixels), refusals, and the exported student's resolution."""
import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from kd_det.engine.export import _scale_lazy_test_resize, student_config
from kd_det.modeling.geometry import rpn_alignment_problem

from ..detection_utils import assert_task_losses_match_plain, fixed_batch, kd_cfg

SHIFTED = ["p3", "p4", "p5", "p6"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    c = kd_cfg(tmp_path_factory.mktemp("teacher"))
    c.KD.STUDENT.INPUT_SCALE = 0.5
    c.KD.HINT.STUDENT_FEATURES = ["p2", "p3", "p4", "p5"]
    c.KD.HINT.TEACHER_FEATURES = SHIFTED
    return c


def _losses(model, batch):
    with EventStorage():
        return model(batch)


def test_student_sees_the_batch_at_half_size(cfg):
    model = build_model(cfg)
    batch = fixed_batch(size=96)
    batch[1]["image"] = batch[1]["image"][:, :95, :]  # odd size: ceil(95 / 2) = 48
    out = model.student_inputs(batch)
    assert [tuple(x["image"].shape[-2:]) for x in out] == [(48, 48), (48, 48)]
    torch.testing.assert_close(out[0]["instances"].gt_boxes.tensor,
                               batch[0]["instances"].gt_boxes.tensor / 2)
    assert out[1]["instances"].image_size == (48, 48)
    assert (out[0]["height"], out[0]["width"]) == (96, 96)
    torch.testing.assert_close(out[0]["instances"].gt_classes, batch[0]["instances"].gt_classes)
    # the batch itself is untouched, and at scale 1 it is passed as it is
    assert batch[0]["image"].shape[-1] == 96
    full = build_model(kd_cfg_like(cfg, 1.0))
    assert full.student_inputs(batch) is batch


def kd_cfg_like(cfg, scale):
    c = cfg.clone()
    c.KD.STUDENT.INPUT_SCALE = scale
    if scale == 1.0:
        c.KD.HINT.TEACHER_FEATURES = c.KD.HINT.STUDENT_FEATURES
    return c


def test_teacher_outputs_are_its_next_level_and_its_pixels(cfg):
    """The teacher's RPN head on its p3..p6 and on p6 max-pooled (p7) for the student's
    p2..p6, and its box head on the student's ROIs doubled: computed by hand here."""
    model = build_model(cfg).train()
    batch = fixed_batch(size=96)
    images = model.student.preprocess_image(model.student_inputs(batch))
    assert tuple(images.tensor.shape[-2:]) == (64, 64)
    rois = [Boxes(torch.tensor([[4.0, 5.0, 20.0, 25.0], [25.0, 20.0, 45.0, 40.0]]))] * 2
    t_out = model.teacher_outputs(batch, images, rois)
    t = model.teacher
    with torch.no_grad():
        x = t.preprocess_image(batch).tensor
        x = F.pad(x, (0, 128 - x.shape[-1], 0, 128 - x.shape[-2]))
        feats = t.backbone(x)
        levels = [feats[f] for f in ("p3", "p4", "p5", "p6")]
        levels.append(F.max_pool2d(levels[-1], kernel_size=1, stride=2))
        logits, _ = t.proposal_generator.rpn_head(levels)
        boxes = [Boxes(b.tensor * 2) for b in rois]
        scores, _ = t.roi_heads.box_predictor(t.roi_heads.box_head(t.roi_heads.box_pooler(
            [feats[f] for f in t.roi_heads.box_in_features], boxes)))
    s_feats = model.student.backbone(images.tensor)
    for k, (f, ref) in enumerate(zip(("p2", "p3", "p4", "p5", "p6"), logits)):
        assert s_feats[f].shape[-2:] == ref.shape[-2:]
        torch.testing.assert_close(t_out.rpn_logits[k], ref.permute(0, 2, 3, 1).flatten(1))
    torch.testing.assert_close(t_out.box_scores, scores)
    for s, tf in zip(cfg.KD.HINT.STUDENT_FEATURES, SHIFTED):
        assert s_feats[s].shape[-2:] == t_out.features[tf].shape[-2:]


def test_training_step_distils_every_term_into_the_student(cfg):
    c = cfg.clone()
    c.KD.RPN.MARGIN = c.KD.ROI.MARGIN = 1e3  # an untrained teacher: keep the bound on
    torch.manual_seed(0)
    model = build_model(c).train()
    losses = _losses(model, fixed_batch())
    kd = ("loss_rpn_kd_cls", "loss_rpn_kd_reg", "loss_roi_kd_cls", "loss_roi_kd_reg",
          "loss_hint")
    for k in kd:
        assert torch.isfinite(losses[k]) and losses[k] > 0, k
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.backbone.fpn_output2.weight.grad.abs().sum() > 0
    assert set(model.adapters.adapters) == {f"{s}_to_{t}" for s, t in
                                             zip(c.KD.HINT.STUDENT_FEATURES, SHIFTED)}


def test_task_losses_are_the_students_on_the_resized_batch(cfg):
    """The student's own losses are a plain GeneralizedRCNN's on the half-size batch."""
    c = cfg.clone()
    c.KD.RPN.MU = c.KD.ROI.MU = 0.5
    assert_task_losses_match_plain(build_model(c).train(), fixed_batch(), 0.5, 0.5)


def test_inference_is_the_student_at_half_size_in_original_pixels(cfg):
    model = build_model(cfg).eval()
    batch = [{k: v for k, v in x.items() if k != "instances"} for x in fixed_batch()]
    with torch.no_grad():
        ours = model(batch)
        ref = model.student(model.student_inputs(batch))
    for a, b in zip(ours, ref):
        assert a["instances"].image_size == (96, 96)
        torch.testing.assert_close(a["instances"].pred_boxes.tensor,
                                   b["instances"].pred_boxes.tensor)


def test_unpaired_levels_and_scales_are_refused(cfg):
    c = cfg.clone()
    c.KD.HINT.TEACHER_FEATURES = ["p2", "p3", "p4", "p5"]
    with pytest.raises(ValueError, match="KD.HINT.TEACHER_FEATURES.*'p2'.*stride 8"):
        build_model(c)
    c = cfg.clone()
    c.KD.STUDENT.INPUT_SCALE = 0.3
    with pytest.raises(ValueError, match="KD.STUDENT.INPUT_SCALE"):
        build_model(c)


def test_anchor_alignment_counts_the_shift(cfg):
    model = build_model(cfg)
    s, t = model.student, model.teacher
    s_shapes, t_shapes = s.backbone.output_shape(), t.backbone.output_shape()
    args = (s.proposal_generator, t.proposal_generator, s_shapes, t_shapes)
    assert rpn_alignment_problem(*args, level_shift=1) == ""
    assert rpn_alignment_problem(*args, level_shift=0) == ""
    # a student whose anchors are given in the teacher's pixels is not aligned at 1/2
    c = cfg.clone()
    c.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    with pytest.raises(ValueError, match="anchor sizes or aspect ratios differ"):
        build_model(c)


def test_exported_student_keeps_its_resolution(cfg):
    c = cfg.clone()
    c.INPUT.MIN_SIZE_TRAIN, c.INPUT.MAX_SIZE_TRAIN = (256, 288), 342
    c.INPUT.MIN_SIZE_TEST, c.INPUT.MAX_SIZE_TEST = 256, 341
    out = student_config(c)
    assert (out.INPUT.MIN_SIZE_TRAIN, out.INPUT.MAX_SIZE_TRAIN) == ((128, 144), 171)
    assert (out.INPUT.MIN_SIZE_TEST, out.INPUT.MAX_SIZE_TEST) == (128, 171)
    assert student_config(kd_cfg_like(c, 1.0)).INPUT.MIN_SIZE_TEST == 256


def test_lazy_export_scales_the_test_resize():
    lazy = LazyConfig.load("configs/builtin/kd.py")
    _scale_lazy_test_resize(lazy, 0.5)
    augs = [a for a in lazy.dataloader.test.mapper.augmentations if "short_edge_length" in a]
    before = [a for a in LazyConfig.load("configs/builtin/kd.py").dataloader.test.mapper
              .augmentations if "short_edge_length" in a]
    assert augs and [a.short_edge_length for a in augs] == [
        -(-b.short_edge_length // 2) for b in before]
    del lazy.dataloader.test.mapper.augmentations[:]
    with pytest.raises(ValueError, match="ResizeShortestEdge"):
        _scale_lazy_test_resize(lazy, 0.5)
