"""DistillRCNN: a Faster R-CNN student trained against a frozen Faster R-CNN teacher
(Chen et al., "Learning Efficient Object Detection Models with Knowledge Distillation",
NeurIPS 2017).

The teacher costs one backbone pass plus its RPN head and box head: it sees the anchors
the student sampled and the ROIs the student sampled, never runs its own proposal
generation, NMS or post-processing. Inference runs the student alone.
"""
import logging
import math
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.layers import move_device_like
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

from ..config import validate_kd_config
from .class_map import ClassMap, InStudentClasses, resolve_class_map
from .diagnostics import grad_norms, term_name
from .frozen import DistillerBase
from .geometry import level_shift
from .kd_terms import (
    KDStep,
    KDTerm,
    _own_tensors,
    align_rpn_terms,
    build_kd_terms,
    inherit_from_teacher,
)
from .outputs import StudentROI, StudentRPN, TeacherOutputs
from .teacher import build_teacher, build_teacher_cfgs, teacher_specs

__all__ = ["DistillRCNN", "TeacherOutputs", "StudentRPN", "StudentROI"]

logger = logging.getLogger(__name__)


def _recoding(student_rpn, teacher_rpn, name: str):
    """Factors w_s / w_t that turn the teacher's RPN deltas into the student's coding, or
    None when both use the same MODEL.RPN.BBOX_REG_WEIGHTS. Each delta is its weight times
    a quantity of the anchor and the box alone (Box2BoxTransform.get_deltas), and aligned
    anchors are the same boxes, so the ratio re-expresses the teacher's box exactly."""
    w_s = tuple(student_rpn.box2box_transform.weights)
    w_t = tuple(teacher_rpn.box2box_transform.weights)
    if w_s == w_t:
        return None
    logger.info("The %s's RPN deltas are re-expressed from its MODEL.RPN.BBOX_REG_WEIGHTS %s "
                "to the student's %s.", name, w_t, w_s)
    return tuple(s / t for s, t in zip(w_s, w_t))


def _dataset_classes(cfg) -> Optional[List[str]]:
    """The class names of cfg's first training set, None when it is not registered (a
    teacher trained elsewhere) or names none."""
    names = cfg.DATASETS.TRAIN
    if not names or names[0] not in DatasetCatalog.list():
        return None
    return MetadataCatalog.get(names[0]).get("thing_classes", None)


def _class_maps(student, teachers: Dict[str, nn.Module], spec, allow_missing: bool,
                class_names) -> Dict[str, Optional[ClassMap]]:
    """Each teacher's ClassMap into the student's classes (None: the same classes in the
    same order). Without a `spec` a teacher of another class count is mapped by name."""
    k_s = student.roi_heads.num_classes
    counts = [k_s] + [t.roi_heads.num_classes for t in teachers.values()]
    # names that do not fit the model's class count (a config's default dataset) are none
    names = [n if n is not None and len(n) == k else None
             for n, k in zip(class_names or [None] * len(counts), counts)]
    if spec is not None and not isinstance(spec, str) and len(teachers) > 1:
        raise ValueError("KD.TEACHER.CLASS_MAP (LazyConfig: teacher_class_map): a list of "
                         "indices maps one teacher; with several give 'by_name'.")
    maps = {}
    for (name, t), t_names in zip(teachers.items(), names[1:]):
        k_t = t.roi_heads.num_classes
        if spec is None and k_t == k_s:
            maps[name] = None
            continue
        if spec is None and (names[0] is None or t_names is None):
            raise ValueError(
                f"the {name} predicts {k_t} classes but the student {k_s}, and the class "
                "names of their training sets are unknown (DATASETS.TRAIN not registered, or "
                "not of that many classes), so they cannot be mapped by name: give "
                "KD.TEACHER.CLASS_MAP (LazyConfig: teacher_class_map), one teacher class "
                "index per student class.")
        cmap = resolve_class_map("by_name" if spec is None else spec, names[0], t_names,
                                 k_s, k_t, allow_missing,
                                 key="KD.TEACHER.CLASS_MAP (LazyConfig: teacher_class_map)")
        if cmap.is_identity():
            maps[name] = None
            continue
        if names[0] is not None and t_names is not None:
            logger.info("KD.TEACHER.CLASS_MAP, %s: %s", name,
                        cmap.describe(names[0], t_names))
        maps[name] = cmap
    return maps


def _flatten_rpn_outputs(logits, deltas, box_dim):
    """Detectron2's RPN layout: (N, Hi*Wi*A) logits and (N, Hi*Wi*A, B) deltas per level."""
    logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
    deltas = [
        x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2)
        .flatten(1, -2)
        for x in deltas
    ]
    return logits, deltas


def _why_nothing_inherited(student: nn.Module, teacher: nn.Module) -> str:
    """An example of why inherit_from_teacher matched no module, for the warning."""
    t_modules = dict(teacher.named_modules())
    for name, m in student.named_modules():
        own, t = _own_tensors(m), t_modules.get(name)
        if not own or t is None:
            continue
        t_own = _own_tensors(t)
        for k in sorted(set(own) | set(t_own)):
            s_shape, t_shape = (tuple(x[k].shape) if k in x else "absent" for x in (own, t_own))
            if s_shape != t_shape:
                return (f"no student module has the teacher's tensor names and shapes, e.g. "
                        f"{name}.{k}: student {s_shape}, teacher {t_shape}")
    s_name, t_name = (next((n for n, m in model.named_modules() if _own_tensors(m)), "none")
                      for model in (student, teacher))
    return (f"no student module has the name of a teacher module (student {s_name}, teacher "
            f"{t_name})")


@META_ARCH_REGISTRY.register()
class DistillRCNN(DistillerBase):
    """Student GeneralizedRCNN + frozen teacher + the active KD terms (kd_terms registry).

    ``state_dict()`` holds ``student.*`` and the terms' modules (``adapters.*``) only; the
    teacher is reloaded from KD.TEACHER.WEIGHTS whenever the model is built.
    """

    @configurable
    def __init__(
        self,
        *,
        student: GeneralizedRCNN,
        teacher: Union[GeneralizedRCNN, Sequence[GeneralizedRCNN]],
        kd_terms: Sequence[KDTerm],
        init_from_teacher: bool = False,
        rpn_on_mismatch: str = "error",
        warmup_iters: int = 0,
        diagnostics_period: int = 0,
        input_scale: float = 1.0,
        teacher_class_map: Union[None, str, Sequence[int]] = None,
        allow_missing_classes: bool = False,
        class_names: Optional[Sequence[Optional[Sequence[str]]]] = None,
    ):
        """
        Args:
            student: the GeneralizedRCNN to train.
            teacher: a trained GeneralizedRCNN, weights already loaded (e.g. by
                :func:`load_teacher`), or a list of several; each is frozen here and kept
                out of ``state_dict``, parameters and DDP.
            kd_terms: the distillation terms (see kd_terms.build_kd_terms); the modules
                they own (hint adapters) are built here from the two backbones' shapes.
            init_from_teacher: copy into the student every module whose tensors match the
                teacher's (FGD's inheriting strategy), before training.
            rpn_on_mismatch: "error" or "disable" the RPN terms when the two RPNs' anchors
                cannot be aligned.
            warmup_iters: the KD terms' weights rise linearly from 0 over these iterations.
            diagnostics_period: every this many iterations, log each loss's gradient norm
                on the student and the terms' diagnostics (0: never).
            input_scale: the student's input resolution relative to the teacher's (1, 0.5,
                0.25; Chen et al.'s low-resolution student): the batch is the teacher's,
                the student sees it resized (in training and at inference), and its FPN
                level k learns from the teacher's level k + log2(1 / input_scale).
            teacher_class_map: a teacher of a wider label space (kd_det.modeling.class_map):
                "by_name", or one teacher class index per student class (-1: the teacher
                lacks it); None: the same classes, or by name when the counts differ.
            allow_missing_classes: leave a student class the teacher lacks out of the soft
                loss rather than refuse it.
            class_names: [student's, each teacher's] class names (None where unknown), for
                "by_name" and the log.
        """
        super().__init__()
        if not kd_terms:
            raise ValueError(
                "KD.HINT/KD.RPN/KD.ROI (LazyConfig: model.kd_terms): every distillation term "
                "is disabled or has weight zero, so the KD loss is identically zero and the "
                "teacher would run for nothing; enable a term (e.g. KD.ROI.ENABLED True with "
                "KD.ROI.MU < 1) or train a plain GeneralizedRCNN.")
        teachers = list(teacher) if isinstance(teacher, (list, tuple, nn.ModuleList)) or (
            not isinstance(teacher, nn.Module)) else [teacher]
        names = ["teacher"] + [f"teacher_{i}" for i in range(1, len(teachers))]
        for name, m in (("student", student), *zip(names, teachers)):
            if not isinstance(m.proposal_generator, RPN):
                raise ValueError(f"DistillRCNN needs an RPN in the {name} "
                                 "(MODEL.PROPOSAL_GENERATOR.NAME='RPN').")
            if not isinstance(m.roi_heads, StandardROIHeads) or m.roi_heads.train_on_pred_boxes:
                raise ValueError(
                    f"DistillRCNN needs StandardROIHeads-style box heads in the {name} "
                    "(MODEL.ROI_HEADS.NAME 'StandardROIHeads' and "
                    "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES False).")
        self._class_maps = _class_maps(student, dict(zip(names, teachers)), teacher_class_map,
                                       allow_missing_classes, class_names)
        if init_from_teacher:
            copied = inherit_from_teacher(student, teachers[0])
            if copied:
                logger.info("KD.STUDENT.INIT_FROM_TEACHER: copied %d student modules from the "
                            "teacher: %s", len(copied), ", ".join(copied))
            else:
                logger.warning(
                    "KD.STUDENT.INIT_FROM_TEACHER: copied nothing from the teacher: %s. The "
                    "student keeps its own initialisation; inheriting needs modules of the "
                    "teacher's names and widths (else set KD.STUDENT.INIT_FROM_TEACHER False).",
                    _why_nothing_inherited(student, teachers[0]))
        s_shapes = student.backbone.output_shape()
        t_shapes = [t.backbone.output_shape() for t in teachers]
        self.input_scale = input_scale
        self.level_shift = level_shift(input_scale)
        kd_terms = [t.bind(s_shapes, t_shapes, self.level_shift) for t in kd_terms]
        if self.level_shift:
            self._check_low_resolution(student, kd_terms, s_shapes, t_shapes)
        kd_terms = align_rpn_terms(kd_terms, student, teachers, rpn_on_mismatch,
                                   self.level_shift)
        self.student = student
        for name, t in zip(names, teachers):
            self.add_teacher(name, t)
        self.kd_terms = kd_terms
        for t in kd_terms:
            module = t.build_module(s_shapes, t_shapes)
            if module is not None:
                self.add_module(t.module_name, module)
        self.warmup_iters = warmup_iters
        self.diagnostics_period = diagnostics_period
        self._hard_scales = {}
        for term in self.kd_terms:
            self._hard_scales.update(term.hard_loss_scales())
        self._teacher_needs = {n for term in self.kd_terms for n in term.needs}
        for t in teachers:
            s_fmt, t_fmt = student.input_format, t.input_format
            if {s_fmt, t_fmt} - {"RGB", "BGR"} and s_fmt != t_fmt:
                raise ValueError(f"INPUT.FORMAT: student {s_fmt!r} and teacher {t_fmt!r} "
                                 "cannot be converted into each other; give the teacher the "
                                 "same format.")
        # Per teacher: (flip RGB<->BGR, reuse the student's normalised batch), decided once
        # here so that a step compares no device tensors (a host sync).
        self._input_modes = {}
        for name, t in zip(names, teachers):
            flip = student.input_format != t.input_format
            self._input_modes[name] = (flip, not flip and not self.level_shift and torch.equal(
                student.pixel_mean.cpu(), t.pixel_mean.cpu()) and torch.equal(
                student.pixel_std.cpu(), t.pixel_std.cpu()))
        # Per teacher: the factors that re-express its RPN deltas in the student's coding
        # (MODEL.RPN.BBOX_REG_WEIGHTS), None when the two codings are the same.
        self._rpn_recoding = {name: _recoding(student.proposal_generator, t.proposal_generator,
                                              name) for name, t in zip(names, teachers)}
        self._register_load_state_dict_pre_hook(self._accept_plain_student_weights)

    @classmethod
    def from_config(cls, cfg):
        validate_kd_config(cfg)
        s_cfg = cfg.clone()
        s_cfg.defrost()
        s_cfg.MODEL.META_ARCHITECTURE = cfg.KD.STUDENT_META_ARCHITECTURE
        student = META_ARCH_REGISTRY.get(cfg.KD.STUDENT_META_ARCHITECTURE)(s_cfg)
        tcfgs = build_teacher_cfgs(cfg)
        teachers = [build_teacher(tcfg, key.replace("CONFIG_FILE", "WEIGHTS"))
                    for tcfg, (_, _, key) in zip(tcfgs, teacher_specs(cfg))]
        return {
            "student": student,
            "teacher": teachers[0] if len(teachers) == 1 else teachers,
            "kd_terms": build_kd_terms(cfg),
            "init_from_teacher": cfg.KD.STUDENT.INIT_FROM_TEACHER,
            "rpn_on_mismatch": cfg.KD.RPN.ON_MISMATCH,
            "warmup_iters": cfg.KD.WARMUP_ITERS,
            "diagnostics_period": cfg.KD.DIAGNOSTICS_PERIOD,
            "input_scale": cfg.KD.STUDENT.INPUT_SCALE,
            "teacher_class_map": list(cfg.KD.TEACHER.CLASS_MAP) or None,
            "allow_missing_classes": cfg.KD.TEACHER.ALLOW_MISSING_CLASSES,
            "class_names": [_dataset_classes(c) for c in (cfg, *tcfgs)],
        }

    def _check_low_resolution(self, student, kd_terms, s_shapes, t_shapes):
        """What a student at a lower resolution than the teacher cannot do: masks and
        keypoints (not rescaled here), hint pairs whose maps would not cover the same
        image region cell by cell."""
        if student.roi_heads.mask_on or student.roi_heads.keypoint_on:
            raise ValueError("KD.STUDENT.INPUT_SCALE < 1 supports box detection only; the "
                             "student has MODEL.MASK_ON or MODEL.KEYPOINT_ON.")
        up = 2 ** self.level_shift
        for term in kd_terms:
            for s, t in getattr(term, "pairs", ()):
                bad = [i for i, shapes in enumerate(t_shapes)
                       if s in s_shapes and t in shapes
                       and s_shapes[s].stride * up != shapes[t].stride]
                if bad:
                    raise ValueError(
                        f"KD.HINT.TEACHER_FEATURES: with KD.STUDENT.INPUT_SCALE "
                        f"{self.input_scale} the student's {s!r} (stride {s_shapes[s].stride}"
                        f" at 1/{up} resolution) must be paired with the teacher feature of "
                        f"stride {s_shapes[s].stride * up}, not {t!r} (stride "
                        f"{t_shapes[bad[0]][t].stride}); e.g. p2 -> p3, p3 -> p4.")

    @staticmethod
    def _accept_plain_student_weights(state_dict, prefix, *args):
        """Let MODEL.WEIGHTS be a plain GeneralizedRCNN checkpoint: its keys go to the
        student (so a pretrained student or ImageNet backbone loads as usual)."""
        DistillRCNN.plain_to_student_keys(state_dict, prefix)

    @staticmethod
    def plain_to_student_keys(state_dict, prefix: str = ""):
        """In place: a plain GeneralizedRCNN state dict's keys moved under `student.`
        (a DistillRCNN state dict is left as it is). The checkpointer calls it before it
        compares shapes, so a pretrained detector of another class count loads with its
        mismatched head skipped, as in Detectron2."""
        ours = (prefix + "student.", prefix + "adapters.")
        keys = [k for k in state_dict if k.startswith(prefix)]
        if keys and not any(k.startswith(ours) for k in keys):
            for k in keys:
                state_dict[prefix + "student." + k[len(prefix):]] = state_dict.pop(k)
        return state_dict

    @property
    def teacher(self) -> GeneralizedRCNN:
        return self._teachers["teacher"]

    def teachers_in_student_classes(self) -> Dict[str, nn.Module]:
        """{name: teacher}, a teacher of a wider label space wrapped so that its detections
        are in the student's classes: the teacher as the student's evaluator sees it."""
        return {name: InStudentClasses(t, self._class_maps[name]) if self._class_maps[name]
                else t for name, t in self._teachers.items()}

    @property
    def device(self):
        return self.student.device

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """Training: the student's own losses (the hard ones scaled for the soft-label
        terms) and each active KD term's loss, from one student pass and one partial pass
        of each teacher on what the student sampled. Inference: the student's detections."""
        if not self.training:
            return self.student(self.student_inputs(batched_inputs))
        s = self.student
        s_inputs = self.student_inputs(batched_inputs)
        images = s.preprocess_image(s_inputs)
        gt_instances = [x["instances"].to(self.device) for x in s_inputs]
        features = s.backbone(images.tensor)
        rpn, losses = self._student_rpn(images, features, gt_instances)
        roi, roi_losses = self._student_roi(features, rpn.proposals, gt_instances)
        losses.update(roi_losses)
        boxes = [p.proposal_boxes for p in roi.proposals]
        teachers = tuple(self._teachers.values())
        outs = tuple(self.teacher_outputs(batched_inputs, images, boxes, name)
                     for name in self._teachers)
        step = KDStep(s, teachers[0], tuple(images.tensor.shape[-2:]), gt_instances,
                      features, rpn, roi, outs[0], teachers, outs)
        kd = self.kd_losses(step)
        if self.diagnostics_period:
            self._log_diagnostics(step, losses, kd)
        losses.update(kd)
        return losses

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        if detected_instances is not None and self.level_shift:
            raise ValueError("detected_instances with KD.STUDENT.INPUT_SCALE < 1: give the "
                             "student its own boxes (call model.student.inference).")
        return self.student.inference(self.student_inputs(batched_inputs), detected_instances,
                                      do_postprocess)

    def student_inputs(self, batched_inputs: List[Dict]) -> List[Dict]:
        """The batch as the student sees it: at input_scale < 1 each image resized
        (bilinear with antialiasing, as PIL resizes Detectron2's ResizeShortestEdge) to
        ceil(size * input_scale) and its ground-truth boxes scaled with it; "height" and
        "width" stay the original's, so detections come back in the input's pixels."""
        if not self.level_shift:
            return batched_inputs
        out = []
        for x in batched_inputs:
            h, w = x["image"].shape[-2:]
            size = (math.ceil(h * self.input_scale), math.ceil(w * self.input_scale))
            image = move_device_like(x["image"], self.student.pixel_mean)[None].float()
            y = {**x, "height": x.get("height", h), "width": x.get("width", w),
                 "image": F.interpolate(image, size=size, mode="bilinear",
                                        align_corners=False, antialias=True)[0]}
            if "instances" in x:
                inst = Instances(size, **x["instances"].get_fields())
                if inst.has("gt_boxes"):
                    boxes = inst.gt_boxes.clone()
                    boxes.scale(size[1] / w, size[0] / h)
                    inst.gt_boxes = boxes
                y["instances"] = inst
            out.append(y)
        return out

    def _teacher_images(self, batched_inputs, images: ImageList, name: str) -> torch.Tensor:
        """Teacher `name`'s normalised batch, padded to the student's padded size (times
        1 / input_scale) so that the two RPNs see feature maps of one size."""
        flip, share = self._input_modes[name]
        if share:
            return images.tensor
        t = self._teachers[name]
        ims = [move_device_like(x["image"], t.pixel_mean) for x in batched_inputs]
        if flip:
            ims = [x.flip(0) for x in ims]
        ims = [(x - t.pixel_mean) / t.pixel_std for x in ims]
        up = 2 ** self.level_shift
        h, w = (d * up for d in images.tensor.shape[-2:])
        out = ImageList.from_tensors(ims).tensor
        out = F.pad(out, (0, w - out.shape[-1], 0, h - out.shape[-2]))
        div = t.backbone.size_divisibility
        if div > 1 and (w % div or h % div):
            raise ValueError(
                f"the teacher backbone needs inputs divisible by {div}, but the student pads "
                f"to {tuple(images.tensor.shape[-2:])} (x{up}); use a student backbone whose "
                "size_divisibility is a multiple of the teacher's.")
        return out

    def _student_rpn(self, images, features, gt_instances):
        """The student's RPN step by step (as RPN.forward does), keeping what the KD terms
        need: the anchors, their labels and the raw outputs."""
        rpn = self.student.proposal_generator
        feats = [features[f] for f in rpn.in_features]
        anchors = rpn.anchor_generator(feats)
        logits, deltas = _flatten_rpn_outputs(*rpn.rpn_head(feats), rpn.anchor_generator.box_dim)
        gt_labels, gt_boxes = rpn.label_and_sample_anchors(anchors, gt_instances)
        losses = self._scale_hard(rpn.losses(anchors, logits, gt_labels, deltas, gt_boxes))
        proposals = rpn.predict_proposals(anchors, logits, deltas, images.image_sizes)
        return StudentRPN(anchors, gt_labels, gt_boxes, logits, deltas, proposals), losses

    def _student_roi(self, features, proposals, gt_instances):
        """The student's box branch on its sampled ROIs (as StandardROIHeads does)."""
        roi = self.student.roi_heads
        proposals = roi.label_and_sample_proposals(proposals, gt_instances)
        box_features = roi.box_head(roi.box_pooler([features[f] for f in roi.box_in_features],
                                                   [p.proposal_boxes for p in proposals]))
        scores, deltas = roi.box_predictor(box_features)
        losses = self._scale_hard(roi.box_predictor.losses((scores, deltas), proposals))
        losses.update(roi._forward_mask(features, proposals))
        losses.update(roi._forward_keypoint(features, proposals))
        return StudentROI(proposals, scores, deltas), losses

    def _scale_hard(self, losses):
        """Chen's L_cls = mu * L_hard + ...: the soft-label terms scale the hard losses."""
        return {k: v * self._hard_scales[k] if k in self._hard_scales else v
                for k, v in losses.items()}

    @torch.no_grad()
    def teacher_outputs(self, batched_inputs, images: ImageList, boxes,
                        name: str = "teacher") -> TeacherOutputs:
        """All the work of teacher `name` (default: the first) that KD needs and nothing more:
        its backbone, its RPN head on the feature maps of the student's (aligned) anchors,
        its box head on the student's sampled ROIs `boxes`, each only when an active term
        reads it. No autograd state is recorded; no_grad rather than inference_mode because
        the losses may save these targets for backward, which inference tensors forbid."""
        t = self._teachers[name]
        feats = t.backbone(self._teacher_images(batched_inputs, images, name))
        rpn_out = box_out = (None, None)
        if "rpn" in self._teacher_needs:
            t_rpn = t.proposal_generator
            levels = self._shift_levels([feats[f] for f in t_rpn.in_features])
            logits, deltas = _flatten_rpn_outputs(*t_rpn.rpn_head(levels),
                                                  t_rpn.anchor_generator.box_dim)
            factors = self._rpn_recoding[name]
            if factors is not None:
                deltas = [d * d.new_tensor(factors) for d in deltas]
            rpn_out = (logits, deltas)
        if "roi" in self._teacher_needs:
            t_roi = t.roi_heads
            if self.level_shift:  # the student's ROIs in the teacher's pixels
                boxes = [Boxes(b.tensor * 2 ** self.level_shift) for b in boxes]
            box_out = t_roi.box_predictor(t_roi.box_head(t_roi.box_pooler(
                [feats[f] for f in t_roi.box_in_features], boxes)))
        return TeacherOutputs(feats, *rpn_out, *box_out, self._class_maps[name])

    def _shift_levels(self, maps: List[torch.Tensor]) -> List[torch.Tensor]:
        """The teacher's RPN maps that line up with the student's levels: from level
        `level_shift` on, the coarsest extended by stride-2 max pooling as FPN's
        LastLevelMaxPool makes p6 (its shared RPN head then scores anchors twice as large)."""
        n = len(maps)
        maps = maps[self.level_shift:]
        while len(maps) < n:
            maps.append(F.max_pool2d(maps[-1], kernel_size=1, stride=2))
        return maps

    def _term_module(self, term: KDTerm):
        return getattr(self, term.module_name) if term.module_name else None

    def kd_losses(self, step: KDStep) -> Dict[str, torch.Tensor]:
        """{term.loss_name: loss} of the active terms, scaled by the KD warm-up."""
        scale = 1.0
        if self.warmup_iters:
            scale = min(1.0, (get_event_storage().iter + 1) / self.warmup_iters)
        return {t.loss_name: scale * t(step, self._term_module(t)) for t in self.kd_terms}

    def _log_diagnostics(self, step: KDStep, task: Dict, kd: Dict) -> None:
        """Every `diagnostics_period` iterations: each loss's gradient norm on the student's
        trainable parameters, each KD term's norm relative to the task losses' total, and
        the terms' own diagnostics, under kd_diag/ in the event storage. Host syncs happen
        on these iterations only; with several processes it is skipped (DDP hooks)."""
        storage = get_event_storage()
        if storage.iter % self.diagnostics_period or comm.get_world_size() > 1:
            return
        params = [p for p in self.student.parameters() if p.requires_grad]
        norms = grad_norms({**task, **kd, "task_total": sum(task.values())}, params)
        out = {f"grad_norm/{term_name(k)}": v for k, v in norms.items()}
        task_norm = norms["task_total"]
        for k in kd:
            out[f"grad_ratio/{term_name(k)}"] = norms[k] / max(task_norm, 1e-12)
        with torch.no_grad():
            for term in self.kd_terms:
                for k, v in term.diagnostics(step, self._term_module(term)).items():
                    out[k] = float(v)
        storage.put_scalars(**{f"kd_diag/{k}": v for k, v in out.items()},
                            smoothing_hint=False)
