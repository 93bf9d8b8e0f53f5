"""DistillRCNN on tiny real Detectron2 models: gradients, frozen teacher, checkpoints,
refusals before the first step, every KD term, a model that learns, and its task losses
pinned to Detectron2's GeneralizedRCNN."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from kd_det.modeling import DistillRCNN
from kd_det.modeling.kd_terms import build_kd_terms

from ..detection_utils import (
    active_terms,
    assert_task_losses_match_plain,
    fixed_batch,
    kd_cfg,
)

KD_TERMS = ("loss_rpn_kd_cls", "loss_rpn_kd_reg", "loss_roi_kd_cls", "loss_roi_kd_reg",
            "loss_hint")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return kd_cfg(tmp_path_factory.mktemp("teacher"))


def _losses(model, batch):
    with EventStorage():
        return model(batch)


def test_is_registered_and_builds(cfg):
    model = build_model(cfg)
    assert isinstance(model, DistillRCNN)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert not model.teacher.training


def test_state_dict_and_parameters_hold_no_teacher(cfg):
    model = build_model(cfg)
    keys = list(model.state_dict())
    assert keys and all(k.startswith(("student.", "adapters.")) for k in keys)
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert model.teacher not in list(model.modules())


def test_teacher_moves_with_the_model(cfg):
    model = build_model(cfg).to(torch.float64)
    assert next(model.teacher.parameters()).dtype == torch.float64
    model.train()
    assert not model.teacher.training


def test_every_kd_term_is_logged_finite_and_nonzero(cfg):
    # The teacher here is untrained, so it is usually worse than the student and the
    # bound would (correctly) switch the regression terms off; a wide margin keeps them on.
    c = cfg.clone()
    c.KD.RPN.MARGIN = c.KD.ROI.MARGIN = 1e3
    torch.manual_seed(0)
    model = build_model(c).train()
    losses = _losses(model, fixed_batch())
    for k in KD_TERMS + ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"):
        assert k in losses, k
        assert torch.isfinite(losses[k]) and losses[k].item() != 0, k


@pytest.mark.parametrize("node,terms", [
    ("HINT", ("loss_hint",)),
    ("RPN", ("loss_rpn_kd_cls", "loss_rpn_kd_reg")),
    ("ROI", ("loss_roi_kd_cls", "loss_roi_kd_reg")),
])
def test_disabled_terms_are_absent(cfg, node, terms):
    c = cfg.clone()
    c.KD[node].ENABLED = False
    losses = _losses(build_model(c).train(), fixed_batch())
    assert not set(terms) & set(losses)
    assert set(KD_TERMS) - set(terms) <= set(losses)


def test_mu_scales_the_hard_loss_and_reg_mode_none_drops_reg(cfg):
    c = cfg.clone()
    c.KD.ROI.MU = 1.0
    c.KD.ROI.REG_MODE = "none"
    c.KD.HINT.ENABLED = False
    torch.manual_seed(0)
    m1 = build_model(c).train()
    torch.manual_seed(0)
    l1 = _losses(m1, fixed_batch())
    assert "loss_roi_kd_cls" not in l1 and "loss_roi_kd_reg" not in l1
    c.KD.ROI.MU = 0.25
    m2 = build_model(c).train()
    m2.load_state_dict(m1.state_dict())
    torch.manual_seed(0)
    l2 = _losses(m2, fixed_batch())
    assert l2["loss_cls"].item() == pytest.approx(0.25 * l1["loss_cls"].item(), rel=1e-5)


def test_gradients_reach_student_and_adapters_never_teacher(cfg):
    model = build_model(cfg).train()
    losses = _losses(model, fixed_batch())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    for name in ("backbone", "proposal_generator", "roi_heads"):
        grads = [p.grad for p in getattr(model.student, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    for p in model.adapters.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_teacher_bit_identical_after_optimizer_steps(cfg):
    model = build_model(cfg).train()
    before = model.teacher_params_snapshot()  # includes BN running statistics
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    for _ in range(3):
        opt.zero_grad()
        sum(_losses(model, fixed_batch()).values()).backward()
        opt.step()
    after = model.teacher_params_snapshot()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_inference_runs_the_student_only(cfg):
    model = build_model(cfg).eval()
    model.teacher.forward = None  # any call to the teacher would fail
    model.teacher.backbone.forward = None
    batch = [{"image": b["image"], "height": 96, "width": 96} for b in fixed_batch()]
    with torch.no_grad():
        out = model(batch)
        ref = model.student(batch)
    assert len(out) == 2
    for a, b in zip(out, ref):
        torch.testing.assert_close(a["instances"].pred_boxes.tensor,
                                   b["instances"].pred_boxes.tensor)


def test_tiny_distill_rcnn_learns(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = fixed_batch()
    totals = []
    with EventStorage():
        for _ in range(30):
            loss = sum(model(batch).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            totals.append(loss.item())
    assert sum(totals[-5:]) / 5 < 0.8 * sum(totals[:5]) / 5, totals


def test_missing_teacher_key_is_rejected(cfg, tmp_path):
    sd = torch.load(cfg.KD.TEACHER.WEIGHTS)["model"]
    sd.pop(next(k for k in sd if "box_predictor" in k))
    path = str(tmp_path / "broken.pth")
    torch.save({"model": sd}, path)
    c = cfg.clone()
    c.KD.TEACHER.WEIGHTS = path
    with pytest.raises(ValueError, match=r"KD.TEACHER.WEIGHTS.*missing keys.*box_predictor"):
        build_model(c)


def test_missing_teacher_file_is_rejected(cfg):
    c = cfg.clone()
    c.KD.TEACHER.WEIGHTS = "/nonexistent/teacher.pth"
    with pytest.raises(FileNotFoundError, match="KD.TEACHER.WEIGHTS"):
        build_model(c)


def test_a_teacher_of_the_students_classes_is_evaluated_as_it_is(cfg):
    model = build_model(cfg)
    assert model.teachers_in_student_classes() == {"teacher": model.teacher}


def test_class_count_mismatch_needs_a_class_map(tmp_path):
    """Unregistered training sets give no class names to map by: refused, naming the key;
    an explicit KD.TEACHER.CLASS_MAP builds (its values: tests/modeling/test_class_map)."""
    c = kd_cfg(tmp_path, num_classes=5)
    with pytest.raises(ValueError, match="predicts 5 classes but the student 3.*CLASS_MAP"):
        build_model(c)
    c.KD.TEACHER.CLASS_MAP = [4, 0, 2]
    model = build_model(c)
    assert model._class_maps["teacher"].teacher_index == (4, 0, 2)
    # What the teacher's AP before training is computed on: its detections in the
    # student's classes (the same teacher object inside).
    (wrapped,) = model.teachers_in_student_classes().values()
    assert wrapped.detector is model.teacher
    assert wrapped._to_student.tolist() == [1, -1, 2, -1, 0]
    c.KD.TEACHER.CLASS_MAP = ["shark", 0, 2]
    with pytest.raises(ValueError, match="KD.TEACHER.CLASS_MAP: must be teacher class"):
        build_model(c)


def test_unalignable_anchors_are_rejected_or_disabled(tmp_path):
    c = kd_cfg(tmp_path, anchor_sizes=[[32], [64], [128], [256], [512]])
    with pytest.raises(ValueError, match="KD.RPN: teacher and student anchors cannot be aligned"):
        build_model(c)
    c.KD.RPN.ON_MISMATCH = "disable"
    model = build_model(c).train()
    losses = _losses(model, fixed_batch())
    assert "loss_rpn_kd_cls" not in losses and "loss_roi_kd_cls" in losses
    # One function decides: without the models it cannot see the mismatch, with them it
    # leaves the RPN terms out.
    assert "loss_rpn_kd_cls" in active_terms(c)
    assert [t.loss_name for t in build_kd_terms(c, model.student, model.teacher)] == [
        "loss_roi_kd_cls", "loss_roi_kd_reg", "loss_hint"]


def test_config_errors_name_the_key(cfg):
    c = cfg.clone()
    c.KD.HINT.STUDENT_FEATURES = ["p9", "p3", "p4", "p5", "p6"]
    with pytest.raises(ValueError, match="KD.HINT.STUDENT_FEATURES: 'p9'"):
        build_model(c)
    c = cfg.clone()
    c.KD.HINT.WEIGHT = 0.0
    c.KD.RPN.ENABLED = False
    c.KD.ROI.MU = 1.0
    c.KD.ROI.REG_MODE = "none"
    with pytest.raises(ValueError, match="KD.HINT/KD.RPN/KD.ROI.*identically zero"):
        build_model(c)
    c.KD.ROI.MU = 0.9  # one active term is enough
    assert active_terms(c) == ["loss_roi_kd_cls"]


def test_task_losses_equal_plain_generalized_rcnn(cfg):
    """DistillRCNN's own copy of the student's RPN and box-head path gives Detectron2's
    GeneralizedRCNN losses on the same weights, batch and seed (cls losses divided by mu)."""
    c = cfg.clone()
    c.KD.RPN.MU, c.KD.ROI.MU = 0.5, 0.25
    model = build_model(c).train()
    assert_task_losses_match_plain(model, fixed_batch(), 0.5, 0.25)
