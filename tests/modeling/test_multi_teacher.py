"""Several teachers (KD.TEACHERS): frozen and out of state_dict, the ensemble targets
against a hand computation, refusals, and each teacher's AP logged before training."""
import json

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch import nn

from kd_det.config import validate_kd_config
from kd_det.engine import KDTrainer
from kd_det.losses import class_weights
from kd_det.modeling.kd_terms import (
    Hint,
    ROIBoundedRegression,
    ROISoftLabel,
    RPNBoundedRegression,
    RPNSoftLabel,
    build_kd_terms,
)

from ..detection_utils import (
    fixed_batch,
    make_coco_dataset,
    short_run,
    tiny_rcnn_cfg,
    write_teacher,
)


def _two_teacher_cfg(tmp, **second):
    cfg = tiny_rcnn_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
    cfg.KD.TEACHERS = [list(write_teacher(tmp, seed=0)),
                       list(write_teacher(tmp, seed=1, **second))]
    return cfg


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return build_model(_two_teacher_cfg(str(tmp_path_factory.mktemp("teachers"))))


def _step(model, batch):
    """Run one forward and keep the KDStep the terms saw."""
    seen = {}
    kd_losses = model.kd_losses

    def spy(step):
        seen["step"] = step
        return kd_losses(step)

    model.kd_losses = spy
    try:
        with EventStorage(0):
            losses = model(batch)
    finally:
        del model.kd_losses
    return seen["step"], losses


def test_teachers_are_frozen_and_out_of_the_checkpoint(model):
    assert list(model.teachers) == ["teacher", "teacher_1"]
    assert all(k.startswith(("student.", "adapters.")) for k in model.state_dict())
    assert isinstance(model.adapters, nn.ModuleList) and len(model.adapters) == 2
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for t in model.teachers.values() for p in t.parameters())
    before = model.teacher_params_snapshot()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for seed in range(2):
        with EventStorage(seed):
            losses = model(fixed_batch(seed=seed))
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    after = model.teacher_params_snapshot()
    assert before.keys() == after.keys() and any(k.startswith("teacher_1.") for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not t.training for t in model.teachers.values())


def test_ensemble_targets_equal_the_hand_computed_mean(model):
    model.train()
    torch.manual_seed(3)
    step, losses = _step(model, fixed_batch(seed=4))
    (t0, o0), (t1, o1) = step.all_teachers()
    assert t0 is model.teachers["teacher"] and t1 is model.teachers["teacher_1"]

    # ROI soft label: mean of the two teachers' softmax, class-weighted soft CE.
    term = next(t for t in model.kd_terms if isinstance(t, ROISoftLabel))
    p = (F.softmax(o0.box_scores, -1) + F.softmax(o1.box_scores, -1)) / 2
    k = model.student.roi_heads.num_classes
    w = class_weights(k + 1, bg_index=k, bg_weight=term.bg_weight)
    want = (1 - term.mu) * (-(w * p * F.log_softmax(step.roi.scores, -1)).sum(-1)).mean()
    torch.testing.assert_close(losses["loss_roi_kd_cls"], want)

    # RPN soft label: mean of the two teachers' sigmoid on the sampled anchors.
    term = next(t for t in model.kd_terms if isinstance(t, RPNSoftLabel))
    z_s = torch.cat(step.rpn.logits, 1)
    p = sum(torch.sigmoid(torch.cat(o.rpn_logits, 1)) for o in (o0, o1)) / 2
    per = -(p * F.logsigmoid(z_s) + term.bg_weight * (1 - p) * F.logsigmoid(-z_s))
    valid = (torch.stack(step.rpn.gt_labels) >= 0).float()
    n = model.student.proposal_generator.batch_size_per_image * len(step.gt_instances)
    torch.testing.assert_close(losses["loss_rpn_kd_cls"],
                               (1 - term.mu) * (per * valid).sum() / n)

    # ROI regression: per box, the teacher closer to the ground truth bounds the student.
    term = next(t for t in model.kd_terms if isinstance(t, ROIBoundedRegression))
    one = ROIBoundedRegression(term.mode, term.weight, term.margin)
    r_s, r_t, y, fg = one._inputs(step)
    single = [one._inputs(step._replace(teachers=(t,), ts=(o,)))[1] for t, o in
              step.all_teachers()]
    err = torch.stack([(r - y).pow(2).sum(-1) for r in single])
    torch.testing.assert_close(r_t, torch.where((err[0] <= err[1])[:, None], *single))
    assert (err[0] < err[1]).any() and (err[1] < err[0]).any()  # both teachers are used
    e_s = (r_s - y).pow(2).sum(-1)
    per_box = torch.where(e_s + term.margin > err.min(0).values, e_s, torch.zeros_like(e_s))
    torch.testing.assert_close(losses["loss_roi_kd_reg"],
                               term.weight * (per_box * fg).sum() / fg.numel())
    assert "loss_rpn_kd_reg" in losses and any(isinstance(t, RPNBoundedRegression)
                                              for t in model.kd_terms)

    # Hint: each teacher through its own adapters, averaged.
    hint = next(t for t in model.kd_terms if isinstance(t, Hint))
    per_teacher = [sum(a(step.features, o.features).values()) / len(hint.pairs)
                   for a, o in zip(model.adapters, (o0, o1))]
    torch.testing.assert_close(losses["loss_hint"], hint.weight * sum(per_teacher) / 2)


def test_one_teacher_in_the_list_is_the_single_teacher(tmp_path):
    single = tiny_rcnn_cfg()
    single.MODEL.META_ARCHITECTURE = "DistillRCNN"
    single.KD.TEACHER.CONFIG_FILE, single.KD.TEACHER.WEIGHTS = write_teacher(str(tmp_path))
    listed = single.clone()
    listed.KD.TEACHERS = [[single.KD.TEACHER.CONFIG_FILE, single.KD.TEACHER.WEIGHTS]]
    listed.KD.TEACHER.CONFIG_FILE = listed.KD.TEACHER.WEIGHTS = ""
    out = []
    for cfg in (single, listed):
        torch.manual_seed(0)
        m = build_model(cfg).train()
        torch.manual_seed(1)
        with EventStorage(0):
            out.append({k: v.item() for k, v in m(fixed_batch()).items()})
    assert out[0] == out[1]
    assert build_kd_terms(single) == build_kd_terms(listed)


def test_bad_teacher_lists_are_refused(tmp_path):
    cfg = _two_teacher_cfg(str(tmp_path))
    both = cfg.clone()
    both.KD.TEACHER.CONFIG_FILE = "x.yaml"
    with pytest.raises(ValueError, match="KD.TEACHERS: is set, so KD.TEACHER.CONFIG_FILE"):
        validate_kd_config(both)
    half = cfg.clone()
    half.KD.TEACHERS = [["only_a_config.yaml"]]
    with pytest.raises(ValueError, match=r"KD.TEACHERS\[0\]: must be a \[CONFIG_FILE, WEIGHTS\]"):
        validate_kd_config(half)
    other = _two_teacher_cfg(str(tmp_path), num_classes=4)
    with pytest.raises(ValueError, match=r"teacher_1 predicts 4 classes but the student 3"):
        build_model(other)


def test_each_teachers_ap_is_logged_before_training(tmp_path, one_thread):
    make_coco_dataset(str(tmp_path / "d"), "kd_multi_probe", n_images=3, seed=0)
    cfg = short_run(_two_teacher_cfg(str(tmp_path)), ["kd_multi_probe"], ["kd_multi_probe"],
                    iters=1)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    KDTrainer(cfg).train()
    keys = {k for line in open(tmp_path / "out" / "metrics.json") for k in json.loads(line)}
    assert {"teacher/kd_multi_probe/bbox/AP", "teacher_1/kd_multi_probe/bbox/AP"} <= keys
