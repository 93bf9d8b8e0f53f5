"""A teacher of another backbone family: ResNet-FPN -> MobileNetV2-FPN and back,
EfficientNet-Lite0-FPN (another input normalisation) -> MobileNetV2-FPN, ViTDet's simple
feature pyramid -> MobileNetV2-FPN. Each pair
builds, every term is finite, gradients reach only the student and the adapters, and the
student exports as a plain GeneralizedRCNN; a teacher of other RPN box coding has its
deltas re-expressed in the student's."""
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.utils.events import EventStorage

from kd_det import add_kd_config, add_mobilenet_config
from kd_det.engine import export_student

from ..detection_utils import _calibrate_bn, fixed_batch, load_yaml_cfg, tiny_rcnn_cfg

KD_TERMS = ("loss_rpn_kd_cls", "loss_rpn_kd_reg", "loss_roi_kd_cls", "loss_roi_kd_reg",
            "loss_hint")


def _own_backbone_cfg(base, node, fpn_channels):
    """A Faster R-CNN of kd_det's backbone of `base` (keys MODEL.`node`), random init."""
    cfg = load_yaml_cfg(base,
                        "MODEL.DEVICE", "cpu", f"MODEL.{node}.IMAGENET_WEIGHTS", "",
                        f"MODEL.{node}.NORM", "BN", f"MODEL.{node}.FREEZE_AT", 0,
                        "MODEL.FPN.OUT_CHANNELS", fpn_channels,
                        "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.ROI_BOX_HEAD.FC_DIM", 64)
    tiny = tiny_rcnn_cfg()  # the same heads, anchors and sampling as the ResNet side
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = tiny.MODEL.ANCHOR_GENERATOR.SIZES
    for key in ("BATCH_SIZE_PER_IMAGE", "POST_NMS_TOPK_TRAIN", "PRE_NMS_TOPK_TRAIN"):
        cfg.MODEL.RPN[key] = tiny.MODEL.RPN[key]
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = tiny.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
    return cfg


def _mobilenet_cfg(fpn_channels=32):
    return _own_backbone_cfg("configs/Base-MobileNetV2-FPN.yaml", "MOBILENET", fpn_channels)


def _efficientnet_cfg(fpn_channels=32):
    return _own_backbone_cfg("configs/Base-EfficientNetLite0-FPN.yaml", "EFFICIENTNET",
                             fpn_channels)


def _resnet_cfg(fpn_channels=32):
    cfg = tiny_rcnn_cfg(fpn_channels=fpn_channels)
    add_mobilenet_config(cfg)
    return cfg


def _save_teacher(tmp_path, tcfg, name):
    torch.manual_seed(0)
    teacher = build_model(tcfg)
    _calibrate_bn(teacher)
    cfg_path, w_path = (os.path.join(tmp_path, f"{name}.{e}") for e in ("yaml", "pth"))
    with open(cfg_path, "w") as f:
        f.write(tcfg.dump())
    torch.save({"model": teacher.state_dict()}, w_path)
    return cfg_path, w_path


def _pair(tmp_path, teacher_cfg, student_cfg):
    cfg = student_cfg.clone()
    cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
    cfg.KD.TEACHER.CONFIG_FILE, cfg.KD.TEACHER.WEIGHTS = _save_teacher(
        tmp_path, teacher_cfg, "teacher")
    cfg.KD.RPN.MARGIN = cfg.KD.ROI.MARGIN = 1e3  # keep the bounded terms on (random teacher)
    return cfg


def _check_a_kd_step(model):
    """One training step: every KD term finite and nonzero, gradients in the student and
    every adapter, none in the teacher."""
    with EventStorage():
        losses = model(fixed_batch())
    for k in KD_TERMS:
        assert torch.isfinite(losses[k]) and losses[k].item() != 0, k
    sum(losses.values()).backward()
    assert not any(p.grad is not None for p in model.teacher.parameters())
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"student", "adapters"}
    assert all(p.grad is not None for p in model.adapters.parameters())


@pytest.mark.parametrize("teacher,student", [
    (lambda: _resnet_cfg(64), _mobilenet_cfg),  # ResNet-FPN -> MobileNetV2-FPN
    (lambda: _mobilenet_cfg(64), _resnet_cfg),  # MobileNetV2-FPN -> ResNet-FPN
    (lambda: _efficientnet_cfg(64), _mobilenet_cfg),  # EfficientNet-Lite0-FPN -> MobileNetV2-FPN
])
def test_a_teacher_of_another_family_distils(tmp_path, teacher, student):
    cfg = _pair(tmp_path, teacher(), student())
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert type(model.teacher.backbone.bottom_up) is not type(model.student.backbone.bottom_up)
    _check_a_kd_step(model)

    # The student leaves as a plain GeneralizedRCNN checkpoint that a fresh model takes.
    ckpt = os.path.join(tmp_path, "model_final.pth")
    torch.save({"model": model.state_dict()}, ckpt)
    files = export_student(cfg, ckpt, str(tmp_path / "export"))
    plain_cfg = get_cfg()
    add_kd_config(plain_cfg)
    add_mobilenet_config(plain_cfg)
    plain_cfg.merge_from_file(files["config"])
    assert plain_cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    plain = build_model(plain_cfg).eval()
    DetectionCheckpointer(plain).load(files["weights"])
    model.eval()
    with torch.no_grad():
        a = plain([{k: v for k, v in x.items() if k != "instances"} for x in fixed_batch()])
        b = model([{k: v for k, v in x.items() if k != "instances"} for x in fixed_batch()])
    for x, y in zip(a, b):
        assert torch.equal(x["instances"].pred_boxes.tensor, y["instances"].pred_boxes.tensor)


def test_a_teacher_of_other_rpn_box_coding_is_re_expressed(tmp_path):
    """The same teacher network under two MODEL.RPN.BBOX_REG_WEIGHTS: the raw deltas are
    the same, and the re-expressed ones decode, in the student's coding, to the boxes the
    teacher's own coding gives."""
    student = _resnet_cfg()
    outputs = {}
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        tcfg = _resnet_cfg(64)
        tcfg.MODEL.RPN.BBOX_REG_WEIGHTS = weights
        cfg = _pair(tmp_path, tcfg, student)
        cfg.KD.ROI.ENABLED = False  # the RPN's outputs are what this checks
        model = build_model(cfg).train()
        batch = fixed_batch()
        images = model.student.preprocess_image(batch)
        outputs[weights] = model.teacher_outputs(batch, images, None).rpn_deltas
    rpn = model.student.proposal_generator
    feats = model.student.backbone(images.tensor)
    boxes = torch.cat([a.tensor for a in rpn.anchor_generator([feats[f] for f in rpn.in_features])])
    raw, recoded = outputs.values()  # the student's coding is (1, 1, 1, 1): raw deltas
    t_coding, s_coding = Box2BoxTransform((10.0, 10.0, 5.0, 5.0)), Box2BoxTransform((1.0,) * 4)
    for n in range(2):
        d_raw = torch.cat([d[n] for d in raw])
        d_new = torch.cat([d[n] for d in recoded])
        assert torch.allclose(d_new, d_raw / torch.tensor([10.0, 10.0, 5.0, 5.0]))
        assert torch.allclose(s_coding.apply_deltas(d_new, boxes),
                              t_coding.apply_deltas(d_raw, boxes), atol=1e-3)


def test_a_vitdet_teacher_distils_a_mobilenet_student(one_thread):
    """ViTDet's simple feature pyramid (a plain ViT at stride 16, deconvolved and pooled
    to p2..p6, square-padded) as the teacher of a MobileNetV2-FPN student, built as a
    LazyConfig would build it: every term finite, gradients only in the student and the
    adapters; its hint pairs found by stride (here the same names: other names are
    tests/modeling/test_kd_terms.py's)."""
    pytest.importorskip("timm", reason="Detectron2's ViT needs timm: pip install -e .[vit]")
    from detectron2.modeling import SimpleFeaturePyramid, ViT
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    from kd_det.modeling import DistillRCNN
    from kd_det.modeling.kd_terms import Hint, build_kd_terms

    torch.manual_seed(0)
    teacher = build_model(_resnet_cfg(64))  # its RPN and box head, on a ViTDet backbone
    teacher.backbone = SimpleFeaturePyramid(
        ViT(img_size=96, patch_size=16, embed_dim=64, depth=2, num_heads=2),
        in_feature="last_feat", out_channels=64, scale_factors=(4.0, 2.0, 1.0, 0.5),
        top_block=LastLevelMaxPool(), square_pad=96)
    teacher.eval()
    cfg = _mobilenet_cfg()
    cfg.KD.RPN.MARGIN = cfg.KD.ROI.MARGIN = 1e3  # keep the bounded terms on
    terms = [Hint(pairs=("p2", "p3", "p4", "p5", "p6"), pair_by="stride") if isinstance(
        t, Hint) else t for t in build_kd_terms(cfg)]
    model = DistillRCNN(student=build_model(cfg), teacher=teacher, kd_terms=terms).train()
    (hint,) = [t for t in model.kd_terms if isinstance(t, Hint)]
    assert hint.pairs == tuple((f"p{i}", f"p{i}") for i in range(2, 7))
    _check_a_kd_step(model)
