"""A teacher of a wider label space: the class map against hand computations, and its
refusals."""
import pytest
import torch
from detectron2.structures import Boxes, Instances

from kd_det.modeling.class_map import ClassMap, InStudentClasses, resolve_class_map

TEACHER = ["person", "fish", "car", "shark", "jellyfish"]  # 5 classes + background


def test_by_name_follows_the_student_order():
    m = resolve_class_map("by_name", ["shark", "fish"], TEACHER, 2, 5)
    assert m.teacher_index == (3, 1) and not m.is_identity()
    assert resolve_class_map("by_name", TEACHER, TEACHER, 5, 5).is_identity()


def test_folding_moves_every_unmapped_class_into_background():
    m = ClassMap((3, 1), 5)  # student: shark, fish
    probs = torch.tensor([[0.1, 0.2, 0.05, 0.4, 0.15, 0.1]])
    folded = m.fold_probs(probs)
    # shark 0.4, fish 0.2, background 0.1 + person 0.1 + car 0.05 + jellyfish 0.15
    assert torch.allclose(folded, torch.tensor([[0.4, 0.2, 0.4]]))
    assert torch.allclose(folded.sum(1), torch.ones(1))


def test_a_missing_class_gets_no_mass_and_is_left_out():
    m = resolve_class_map([1, -1], ["fish", "penguin"], TEACHER, 2, 5, allow_missing=True)
    probs = torch.tensor([[0.1, 0.2, 0.05, 0.4, 0.15, 0.1]])
    folded = m.fold_probs(probs)
    assert torch.allclose(folded, torch.tensor([[0.2, 0.0, 0.8]]))
    assert m.columns() == (0, 2)
    assert "not in the teacher (left out of the soft loss): penguin" in m.describe(
        ["fish", "penguin"], TEACHER)


def test_the_regression_reads_the_mapped_class():
    m = ClassMap((3, 1), 5)
    # student classes shark, fish, background (2) -> teacher 3, 1, none
    assert m.teacher_classes(torch.tensor([0, 1, 2, 0])).tolist() == [3, 1, -1, 3]


def test_the_log_names_mapped_and_folded_classes():
    text = ClassMap((3, 1), 5).describe(["shark", "fish"], TEACHER)
    assert text == ("mapped shark <- shark, fish <- fish; folded into background: person, "
                    "car, jellyfish")


@pytest.mark.parametrize("spec,names,allow,match", [
    ("by_name", ["fish", "penguin"], False, "'penguin' is not among .*ALLOW_MISSING_CLASSES"),
    ("by_name", ["fsh"], False, "did you mean 'fish'"),
    ("by_nmae", ["fish"], False, "give 'by_name' or a list"),
    ([1], ["fish", "shark"], False, "1 indices for 2 student classes"),
    ([1, 7], ["fish", "shark"], False, r"indices \[7\] outside the teacher's 0..4"),
    ([1, -1], ["fish", "shark"], False, r"\['shark'\] have no teacher class"),
    ([1, 1], ["fish", "shark"], False, r"teacher classes \[1\] are mapped to two"),
])
def test_refusals_name_the_key_and_the_fix(spec, names, allow, match):
    with pytest.raises(ValueError, match=match):
        resolve_class_map(spec, names, TEACHER, len(names), 5, allow)


def test_by_name_needs_the_class_names():
    with pytest.raises(ValueError, match="needs the class names"):
        resolve_class_map("by_name", None, TEACHER, 2, 5)


def _roi_step(box_scores, box_deltas, cmap, student_scores, student_deltas, gt_classes):
    """A KDStep of one teacher on ROIs whose boxes equal their targets (y = 0)."""
    from types import SimpleNamespace as NS

    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.structures import Boxes, Instances

    from kd_det.modeling.kd_terms import KDStep

    n = len(gt_classes)
    props = Instances((100, 100))
    props.proposal_boxes = props.gt_boxes = Boxes(torch.tensor([[10.0, 10, 30, 30]] * n))
    props.gt_classes = torch.tensor(gt_classes)
    b2b = NS(box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)))
    student = NS(roi_heads=NS(num_classes=student_scores.shape[1] - 1, box_predictor=b2b))
    teacher = NS(roi_heads=NS(box_predictor=b2b))
    return KDStep(student=student, teacher=teacher, image_size=(100, 100), gt_instances=[],
                  features={}, rpn=None,
                  roi=NS(proposals=[props], scores=student_scores, deltas=student_deltas),
                  t=NS(box_scores=box_scores, box_deltas=box_deltas, class_map=cmap))


def test_roi_terms_read_the_teacher_through_the_map():
    """Student [shark, fish] from the 5-class TEACHER: the soft target is the teacher's
    shark, fish and everything else + background, the regression reads the deltas of
    the teacher's shark for a student shark."""
    from kd_det.modeling.kd_terms import ROIBoundedRegression, ROISoftLabel

    cmap = resolve_class_map("by_name", ["shark", "fish"], TEACHER, 2, 5)
    t_probs = torch.tensor([[0.1, 0.2, 0.05, 0.4, 0.15, 0.1]])
    s_logits = torch.tensor([[0.3, -0.2, 0.1]], requires_grad=True)
    t_deltas = torch.zeros(1, 5 * 4)
    t_deltas[0, 3 * 4] = 0.5   # teacher's shark: e_t = 0.25
    t_deltas[0, 0] = 9.0       # teacher's person: must not be read
    s_deltas = torch.zeros(1, 2 * 4)
    s_deltas[0, 0] = 1.0       # student's shark (class 0): e_s = 1 > e_t: counted
    step = _roi_step(t_probs.log(), t_deltas, cmap, s_logits, s_deltas, [0])
    soft = ROISoftLabel(mu=0.5, temperature=1.0, bg_weight=1.0)(step)
    target = torch.tensor([0.4, 0.2, 0.4])  # shark, fish, background + person + car + jelly
    expected = -(target * torch.log_softmax(s_logits, 1)).sum() * 0.5
    assert torch.allclose(soft, expected)
    reg = ROIBoundedRegression("bounded", weight=0.5, margin=0.0)(step)
    assert reg.item() == pytest.approx(0.5 * 1.0)
    t_deltas[0, 3 * 4] = 2.0   # now the teacher is worse (e_t = 4): the bound lets go
    assert ROIBoundedRegression("bounded", weight=0.5, margin=0.0)(
        _roi_step(t_probs.log(), t_deltas, cmap, s_logits, s_deltas, [0])).item() == 0


def test_a_missing_class_leaves_the_soft_and_the_bounded_loss():
    """Student [fish, penguin], the teacher has no penguin (allowed): the soft loss is the
    CE over fish and background only, renormalised; a penguin ROI has no teacher box."""
    from kd_det.modeling.kd_terms import ROIBoundedRegression, ROISoftLabel

    cmap = resolve_class_map("by_name", ["fish", "penguin"], TEACHER, 2, 5, allow_missing=True)
    t_probs = torch.tensor([[0.1, 0.2, 0.05, 0.4, 0.15, 0.1]])
    s_logits = torch.tensor([[0.3, 5.0, 0.1]])
    step = _roi_step(t_probs.log(), torch.zeros(1, 20), cmap, s_logits, torch.ones(1, 8), [1])
    soft = ROISoftLabel(mu=0.0, temperature=1.0, bg_weight=1.0)(step)
    kept = torch.log_softmax(s_logits[:, [0, 2]], 1)  # penguin's logit plays no part
    assert torch.allclose(soft, -(torch.tensor([0.2, 0.8]) * kept).sum())
    assert ROIBoundedRegression("bounded", weight=0.5, margin=1e3)(step).item() == 0


def test_distill_rcnn_maps_a_wider_teacher_by_name_or_refuses(tmp_path):
    """A 5-class teacher and a 3-class student build when their classes can be mapped:
    every term finite; refused, naming the key, when a class is missing or the names
    are unknown."""
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from kd_det.modeling import DistillRCNN

    from ..detection_utils import fixed_batch, kd_cfg, tiny_rcnn_cfg

    cfg = kd_cfg(tmp_path, num_classes=5)
    student = build_model(tiny_rcnn_cfg())
    teacher = build_model(tiny_rcnn_cfg(num_classes=5))
    terms = list(DistillRCNN.from_config(cfg)["kd_terms"])
    names = [["shark", "fish", "car"], TEACHER]
    model = DistillRCNN(student=student, teacher=teacher, kd_terms=terms, class_names=names)
    with EventStorage():
        losses = model.train()(fixed_batch())
    assert all(torch.isfinite(v) for v in losses.values())
    assert model._class_maps["teacher"].teacher_index == (3, 1, 2)
    explicit = DistillRCNN(student=student, teacher=teacher, kd_terms=terms,
                           teacher_class_map=[4, 3, 1])
    assert explicit._class_maps["teacher"].teacher_index == (4, 3, 1)
    with pytest.raises(ValueError, match=r"KD.TEACHER.CLASS_MAP.*'penguin'"):
        DistillRCNN(student=student, teacher=teacher, kd_terms=terms,
                    class_names=[["shark", "fish", "penguin"], TEACHER])
    with pytest.raises(ValueError, match="predicts 5 classes but the student 3"):
        DistillRCNN(student=student, teacher=teacher, kd_terms=terms)


class _Fixed(torch.nn.Module):
    """A detector whose detections are given."""

    def __init__(self, classes):
        super().__init__()
        self.classes = torch.tensor(classes)

    def forward(self, batched_inputs):
        n = len(self.classes)
        inst = Instances((10, 10), pred_boxes=Boxes(torch.arange(4 * n).float().view(n, 4)),
                         scores=torch.linspace(0.9, 0.5, n), pred_classes=self.classes)
        return [{"instances": inst} for _ in batched_inputs]


def test_a_wider_teacher_is_scored_in_the_students_classes():
    """Teacher (5 classes) detections of mapped classes get the student's numbers, boxes
    and scores kept; the others are dropped."""
    m = resolve_class_map("by_name", ["shark", "fish"], TEACHER, 2, 5)
    assert m.student_index() == tuple(
        {TEACHER.index("shark"): 0, TEACHER.index("fish"): 1}.get(c, -1) for c in range(5))
    shark, fish = TEACHER.index("shark"), TEACHER.index("fish")
    other = next(c for c in range(5) if c not in (shark, fish))
    (out,) = InStudentClasses(_Fixed([fish, other, shark, fish]), m)([{}])
    inst = out["instances"]
    assert inst.pred_classes.tolist() == [1, 0, 1]
    assert inst.scores.tolist() == pytest.approx([0.9, 0.5 + 0.4 / 3, 0.5])
    assert inst.pred_boxes.tensor[1].tolist() == [8.0, 9.0, 10.0, 11.0]  # the shark's box
