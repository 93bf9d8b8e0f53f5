"""Detection distillation terms, in one registry.

A term is a frozen dataclass registered in ``KD_TERM_REGISTRY``: its fields are its typed
settings, ``from_config(cfg)`` builds it from its KD.* keys (or returns None when the
term is off), and calling it on a :class:`KDStep` gives its loss. :func:`build_kd_terms`
is the one place that decides which terms are active; ``DistillRCNN.forward`` never
changes when a term is added. Chen et al.'s five terms are the first entries.

Every term works on what the student has already labelled and sampled (anchors, ROIs),
uses masks instead of boolean indexing and reads no value back, so that a training step
has no host-device synchronisation.
"""
import dataclasses
import itertools
import logging
import math
from typing import ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from detectron2.layers import cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.registry import Registry
from torch import nn

from ..losses import (
    binary_soft_cross_entropy_to_probs,
    bounded_l2_loss,
    class_weights,
    soft_cross_entropy_to_probs,
    teacher_l2_loss,
)
from .adapters import HintAdapters
from .geometry import level_shift, rpn_alignment_problem
from .outputs import StudentROI, StudentRPN, TeacherOutputs

__all__ = [
    "KD_TERM_REGISTRY",
    "KDStep",
    "KDTerm",
    "build_kd_terms",
    "align_rpn_terms",
    "term_list",
    "encode_deltas",
    "mean_teacher_probs",
    "closest_teacher",
    "student_class_probs",
    "select_class_deltas",
    "gt_box_masks",
    "inherit_from_teacher",
    "RPNSoftLabel",
    "RPNBoundedRegression",
    "ROISoftLabel",
    "ROIBoundedRegression",
    "Hint",
]

logger = logging.getLogger(__name__)

KD_TERM_REGISTRY = Registry("KD_TERM")

# Loss weights: above _MAX_WEIGHT refused, above _USUAL_WEIGHT warned (detection KD methods
# weigh their losses below 100: Chen 0.5-1, PKD 6, FGD up to 50).
_MAX_WEIGHT, _USUAL_WEIGHT = 1e4, 100.0
KD_TERM_REGISTRY.__doc__ = """Detection KD terms (frozen dataclasses with from_config and
__call__(step, module)); every registered term whose from_config returns a term is on."""


class KDStep(NamedTuple):
    """What one DistillRCNN training step gives the terms: every input of a term's loss,
    in one argument instead of many positional ones."""

    student: nn.Module           # the student GeneralizedRCNN
    teacher: nn.Module           # the frozen teacher GeneralizedRCNN
    image_size: Tuple[int, int]  # padded batch (H, W)
    gt_instances: List[Instances]
    features: Dict[str, torch.Tensor]  # student backbone outputs
    rpn: StudentRPN              # anchors, labels, logits, deltas
    roi: StudentROI              # sampled proposals, scores, deltas
    t: TeacherOutputs            # of `teacher`
    # Every teacher and its outputs (`teacher` and `t` are the first); several teachers
    # are combined by the terms: mean probabilities, per-box closest regression, one hint
    # adapter set each.
    teachers: Tuple[nn.Module, ...] = ()
    ts: Tuple[TeacherOutputs, ...] = ()

    def all_teachers(self) -> List[Tuple[nn.Module, TeacherOutputs]]:
        """[(teacher, its outputs)] for every teacher."""
        return list(zip(self.teachers, self.ts)) or [(self.teacher, self.t)]


class KDTerm:
    """Interface of a registered term (the dataclass fields are its settings)."""

    loss_name: ClassVar[str]
    # Teacher heads the term reads: "rpn" (RPN head on the student's anchors) and/or
    # "roi" (box head on the student's sampled ROIs); the backbone always runs.
    needs: ClassVar[Tuple[str, ...]] = ()
    # Attribute name under which DistillRCNN holds the term's module (its state_dict
    # prefix), when build_module gives one.
    module_name: ClassVar[Optional[str]] = None
    # Where its settings live: the KD.<node> yacs node, each field's key there, and the
    # term's name in a LazyConfig's model.kd_terms; refusals name both.
    node: ClassVar[str] = ""
    yacs_keys: ClassVar[Dict[str, str]] = {}
    lazy_name: ClassVar[str] = ""

    def setting(self, field: str) -> str:
        """The field as both entry points spell it, for messages."""
        return (f"KD.{self.node}.{self.yacs_keys[field]} "
                f"(LazyConfig: model.kd_terms.{self.lazy_name}.{field})")

    def _check_number(self, field: str, low: float, high: float, open_low: bool = False,
                      usual: Optional[Tuple[float, float]] = None) -> None:
        """Refuse a non-number, a non-finite value or one outside [low, high] (low excluded
        with open_low) naming the setting; warn outside the `usual` range."""
        v = getattr(self, field)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not (low < v if open_low else low <= v) or v > high:
            raise ValueError(f"{self.setting(field)} must be a finite number in "
                             f"{'(' if open_low else '['}{low:g}, {high:g}], got {v!r}.")
        if usual and not usual[0] <= v <= usual[1]:
            logger.warning("%s=%s is outside the usual %g-%g.", self.setting(field), v, *usual)
        object.__setattr__(self, field, float(v))

    def _check_choice(self, field: str, choices: Tuple[str, ...], hint: str = "") -> None:
        v = getattr(self, field)
        if v not in choices:
            raise ValueError(f"{self.setting(field)} must be one of {choices}, got {v!r}.{hint}")

    @classmethod
    def from_config(cls, cfg) -> Optional["KDTerm"]:
        """The term with its settings read from its KD.* keys, or None when they turn it off.

        Args:
            cfg: a config with the KD node.
        """
        raise NotImplementedError

    def hard_loss_scales(self) -> Dict[str, float]:
        """{student task loss name: factor} this term applies (Chen's mu)."""
        return {}

    def bind(self, student_shapes, teacher_shapes: List[Dict], shift: int = 0) -> "KDTerm":
        """The term as it applies to these models (settings that need the backbones'
        shapes resolved); the term itself by default.

        Args:
            student_shapes, teacher_shapes: as for build_module.
            shift: the student's level shift (:func:`level_shift`).
        """
        return self

    def build_module(self, student_shapes, teacher_shapes: List[Dict]) -> Optional[nn.Module]:
        """Trainable parameters the term owns (e.g. hint adapters), or None.

        Args:
            student_shapes: {feature name: ShapeSpec} of the student's backbone.
            teacher_shapes: one such dict per teacher.
        """
        return None

    def __call__(self, step: KDStep, module: Optional[nn.Module]) -> torch.Tensor:
        """The term's loss, weighted, as a scalar.

        Args:
            step: the student's and the teacher's outputs of this training step.
            module: the term's module (from build_module), or None.
        """
        raise NotImplementedError

    def diagnostics(self, step: KDStep, module: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
        """Extra scalars logged every KD.DIAGNOSTICS_PERIOD iterations.

        Args:
            step, module: as for __call__.
        """
        return {}


def build_kd_terms(cfg, student: Optional[nn.Module] = None,
                   teachers: Union[None, nn.Module, Sequence[nn.Module]] = None
                   ) -> List[KDTerm]:
    """The active terms, in registration order: the one place that decides which are on.

    Args:
        cfg: a config with the KD node; each registered term reads its own keys.
        student, teachers: the GeneralizedRCNNs, once built (one teacher or a list).
            The terms are then checked against the anchors (:func:`align_rpn_terms`,
            under KD.RPN.ON_MISMATCH).
    """
    terms = (term_cls.from_config(cfg) for _, term_cls in KD_TERM_REGISTRY)
    terms = [t for t in terms if t is not None]
    if student is None or teachers is None:
        return terms
    return align_rpn_terms(terms, student, teachers, cfg.KD.RPN.ON_MISMATCH,
                           level_shift(cfg.KD.STUDENT.INPUT_SCALE))


def align_rpn_terms(terms: Sequence[KDTerm], student: nn.Module,
                    teachers: Union[nn.Module, Sequence[nn.Module]],
                    on_mismatch: str = "error", shift: int = 0) -> List[KDTerm]:
    """`terms`, unless some teacher's RPN cannot be compared with the student's anchor by
    anchor: then the terms that read it are an error ("error") or left out ("disable").
    DistillRCNN applies it to the terms it is given, from yacs or a LazyConfig.

    Args:
        terms: the candidate terms.
        student, teachers: the built GeneralizedRCNNs (one teacher or a list).
        on_mismatch: "error" or "disable" (KD.RPN.ON_MISMATCH / rpn_on_mismatch).
        shift: the student's level shift (:func:`level_shift`).
    """
    terms = list(terms)
    teachers = [teachers] if isinstance(teachers, nn.Module) else list(teachers)
    if not any("rpn" in t.needs for t in terms):
        return terms
    s_shapes = student.backbone.output_shape()
    problems = [rpn_alignment_problem(student.proposal_generator, t.proposal_generator,
                                      s_shapes, t.backbone.output_shape(), shift)
                for t in teachers]
    problem = "; ".join(p if len(teachers) == 1 else f"teacher {i}: {p}"
                        for i, p in enumerate(problems) if p)
    if problem and on_mismatch == "error":
        raise ValueError(
            f"KD.RPN: teacher and student anchors cannot be aligned ({problem}). Give both "
            "the same MODEL.ANCHOR_GENERATOR and RPN feature strides, or set "
            "KD.RPN.ON_MISMATCH='disable' (LazyConfig: rpn_on_mismatch) or turn the RPN "
            "terms off.")
    if problem:
        logger.warning("RPN distillation disabled: %s", problem)
        terms = [t for t in terms if "rpn" not in t.needs]
    return terms


def term_list(**terms: Optional[KDTerm]) -> List[KDTerm]:
    """The terms given by keyword, in that order, None dropped: a LazyConfig's kd_terms,
    ``L(term_list)(hint=L(Hint)(...), ...)``, so that ``model.kd_terms.hint=None`` turns a
    term off from the command line. (A plain list would not do: OmegaConf turns dataclass
    objects inside its lists back into configs.)"""
    return [t for t in terms.values() if t is not None]


# ---- helpers --------------------------------------------------------------------------


def encode_deltas(box2box: Box2BoxTransform, src: torch.Tensor, dst: torch.Tensor):
    """Box2BoxTransform.get_deltas(src, dst), broadcast over leading dims and without its
    validity assert, whose .item() makes the host wait for the device on every call (the
    boxes here are the student's anchors and sampled ROIs, valid by construction).

    Args:
        box2box: the transform whose weights code the deltas.
        src: (..., 4) reference boxes (XYXY), e.g. anchors or proposals.
        dst: (..., 4) target boxes of the same leading shape.
    """

    def centres_and_sizes(b):
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        return b[..., 0] + 0.5 * w, b[..., 1] + 0.5 * h, w, h

    sx, sy, sw, sh = centres_and_sizes(src)
    tx, ty, tw, th = centres_and_sizes(dst)
    wx, wy, ww, wh = box2box.weights
    return torch.stack((wx * (tx - sx) / sw, wy * (ty - sy) / sh,
                        ww * torch.log(tw / sw), wh * torch.log(th / sh)), dim=-1)


def select_class_deltas(deltas: torch.Tensor, classes: torch.Tensor, box_dim: int = 4):
    """(R, K*B) or (R, B) deltas -> (R, B) deltas of each ROI's class (clamped to K-1 for
    background ROIs, whose rows must be masked out by the caller).

    Args:
        deltas: (R, K*B) class-specific or (R, B) class-agnostic box deltas.
        classes: (R,) class index of each ROI (K = background).
        box_dim: B, 4 for axis-aligned boxes.
    """
    if deltas.shape[1] == box_dim:
        return deltas
    k = deltas.shape[1] // box_dim
    idx = classes.clamp(max=k - 1).view(-1, 1, 1).expand(-1, 1, box_dim)
    return deltas.view(-1, k, box_dim).gather(1, idx).squeeze(1)


def gt_box_masks(gt_instances: List[Instances], image_size: Tuple[int, int],
                 map_size: Tuple[int, int], device=None) -> torch.Tensor:
    """(N, 1, h, w) mask: 1 where the centre of a feature-map cell lies inside a
    ground-truth box of its image (the map covers the padded batch `image_size`).

    Args:
        gt_instances: per image, Instances with gt_boxes.
        image_size: (H, W) of the padded batch.
        map_size: (h, w) of the feature map.
        device: of the mask.
    """
    (H, W), (h, w) = image_size, map_size
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (H / h)
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (W / w)
    masks = []
    for inst in gt_instances:
        b = inst.gt_boxes.tensor.to(device=device, dtype=torch.float32)  # (G, 4)
        inside_x = (xs[None] >= b[:, :1]) & (xs[None] < b[:, 2:3])      # (G, w)
        inside_y = (ys[None] >= b[:, 1:2]) & (ys[None] < b[:, 3:4])     # (G, h)
        m = (inside_y[:, :, None] & inside_x[:, None, :]).any(0)        # (h, w)
        masks.append(m)
    return torch.stack(masks)[:, None].float()


def mean_teacher_probs(logits: List[torch.Tensor], temperature: float,
                       binary: bool) -> torch.Tensor:
    """The teachers' tempered probabilities, averaged: sigmoid(z / T) for objectness
    logits (binary), softmax(z / T) over the last dim for class logits.

    Args:
        logits: one tensor per teacher, all of one shape.
        temperature: T.
        binary: sigmoid (RPN objectness) rather than softmax (ROI classes).
    """
    z = torch.stack([x.detach().float() for x in logits]) / temperature
    return (torch.sigmoid(z) if binary else torch.softmax(z, dim=-1)).mean(0)


def student_class_probs(step: KDStep, temperature: float
                        ) -> Tuple[torch.Tensor, Optional[List[int]]]:
    """The teachers' tempered class probabilities on the student's ROIs in the student's
    label space (a wider teacher's folded by its ClassMap), averaged; and the student
    columns every teacher covers (None: all), as a plain list so selecting them syncs
    nothing."""
    probs, columns = [], None
    for _, t in step.all_teachers():
        p = mean_teacher_probs([t.box_scores], temperature, binary=False)
        if t.class_map is not None:
            p = t.class_map.fold_probs(p)
            if len(t.class_map.columns()) < p.shape[1]:
                covered = set(t.class_map.columns())
                columns = [c for c in (columns or range(p.shape[1])) if c in covered]
        probs.append(p)
    return torch.stack(probs).mean(0), columns


def closest_teacher(r_ts: List[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Per box, the regression output of the teacher whose squared error to the ground-
    truth deltas is smallest: with several teachers, the bound of Chen et al.'s L_b is the
    best any of them achieves on that box.

    Args:
        r_ts: one (B, 4) tensor of deltas per teacher.
        y: (B, 4) ground-truth deltas.
    """
    if len(r_ts) == 1:
        return r_ts[0]
    r = torch.stack(r_ts)                                  # (K, B, 4)
    best = (r.float() - y.float()).pow(2).sum(-1).argmin(0)  # (B,)
    return r.gather(0, best.view(1, -1, 1).expand(1, -1, r.shape[-1])).squeeze(0)


def _per_box_reg(mode: str, r_s, r_t, y, margin: float):
    if mode == "bounded":
        return bounded_l2_loss(r_s, r_t, y, margin=margin, reduction="none")
    return teacher_l2_loss(r_s, r_t, reduction="none")


def _bound_active(r_s, r_t, y, margin):
    """1 where the teacher bound lets the student's L2 term act (Chen et al. eq. 4)."""
    err_s = (r_s.float() - y.float()).pow(2).sum(-1)
    err_t = (r_t.float() - y.float()).pow(2).sum(-1)
    return (err_s + margin > err_t).float()


def _check_rpn_shapes(step: KDStep):
    for a, b in ((a, b) for _, t in step.all_teachers()
                 for a, b in zip(step.rpn.logits, t.rpn_logits)):
        if a.shape != b.shape:
            raise RuntimeError(
                f"KD.RPN: teacher RPN outputs {tuple(b.shape)} do not match the "
                f"student's {tuple(a.shape)} on the same anchors; the backbones pad or "
                "stride differently. Set KD.RPN.ENABLED False or align the backbones.")


def _rpn_normalizer(step: KDStep) -> float:
    """Detectron2's RPN loss normaliser: batch_size_per_image * num_images."""
    return step.student.proposal_generator.batch_size_per_image * len(step.rpn.gt_labels)


# ---- Chen et al. (NeurIPS 2017) ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SoftLabel(KDTerm):
    """Shared settings of the two soft-label terms: L_cls = mu * L_hard + (1 - mu) * L_soft,
    background weighted.

    Args:
        mu: KD.<node>.MU, the hard loss's share (the term is off at 1).
        temperature: KD.<node>.TEMPERATURE, T of both softmaxes.
        bg_weight: KD.<node>.BG_WEIGHT, the background class's weight in L_soft.
    """

    mu: float = 0.5
    temperature: float = 1.0
    bg_weight: float = 1.5
    hard_loss: ClassVar[str]  # the student's own classification loss that mu scales
    yacs_keys: ClassVar[Dict[str, str]] = {"mu": "MU", "temperature": "TEMPERATURE",
                                           "bg_weight": "BG_WEIGHT"}

    def __post_init__(self):
        self._check_number("mu", 0.0, 1.0)
        self._check_number("temperature", 1e-2, 100.0, usual=(0.5, 20.0))  # Chen et al.: 1
        self._check_number("bg_weight", 0.0, _MAX_WEIGHT, usual=(0.0, _USUAL_WEIGHT))

    @classmethod
    def from_config(cls, cfg):
        n = cfg.KD[cls.node]
        if not n.ENABLED:
            return None
        term = cls(n.MU, n.TEMPERATURE, n.BG_WEIGHT)  # checked even when mu = 1 turns it off
        return term if term.mu < 1 else None

    def hard_loss_scales(self):
        return {self.hard_loss: self.mu}


@KD_TERM_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class RPNSoftLabel(_SoftLabel):
    """loss_rpn_kd_cls: (1 - mu) * class-weighted soft CE of the objectness over the
    sampled anchors.

    Args:
        mu, temperature, bg_weight: from KD.RPN (see _SoftLabel).
    """

    loss_name: ClassVar[str] = "loss_rpn_kd_cls"
    needs: ClassVar[Tuple[str, ...]] = ("rpn",)
    node: ClassVar[str] = "RPN"
    lazy_name: ClassVar[str] = "rpn_soft_label"
    hard_loss: ClassVar[str] = "loss_rpn_cls"

    def __call__(self, step, module=None):
        _check_rpn_shapes(step)
        labels = torch.stack(step.rpn.gt_labels)  # (N, R): 1 fg, 0 bg, -1 ignored
        probs = mean_teacher_probs([cat(t.rpn_logits, dim=1) for _, t in step.all_teachers()],
                                   self.temperature, binary=True)
        per_anchor = binary_soft_cross_entropy_to_probs(
            cat(step.rpn.logits, dim=1), probs, self.temperature, bg_weight=self.bg_weight,
            reduction="none")
        valid = (labels >= 0).to(per_anchor.dtype)
        return (1 - self.mu) * (per_anchor * valid).sum() / _rpn_normalizer(step)


@dataclasses.dataclass(frozen=True)
class _BoundedRegression(KDTerm):
    """Shared settings of the two regression terms.

    Args:
        mode: KD.<node>.REG_MODE, "bounded" (teacher-bounded L2 to the ground truth) or
            "l2" (L2 to the teacher).
        weight: KD.<node>.REG_WEIGHT, nu.
        margin: KD.<node>.MARGIN, m of the bound.
    """

    mode: str = "bounded"
    weight: float = 0.5
    margin: float = 0.0
    yacs_keys: ClassVar[Dict[str, str]] = {"mode": "REG_MODE", "weight": "REG_WEIGHT",
                                           "margin": "MARGIN"}

    def __post_init__(self):
        # yacs' REG_MODE "none" turns the term off; a LazyConfig leaves the term out.
        self._check_choice("mode", ("bounded", "l2"), f" To turn the term off, set KD.{self.node}"
                           f".REG_MODE none (LazyConfig: model.kd_terms.{self.lazy_name}=None).")
        self._check_number("weight", 0.0, _MAX_WEIGHT, usual=(0.0, _USUAL_WEIGHT))
        self._check_number("margin", 0.0, _MAX_WEIGHT)

    @classmethod
    def from_config(cls, cfg):
        n = cfg.KD[cls.node]
        if not n.ENABLED or n.REG_MODE == "none":
            return None
        term = cls(n.REG_MODE, n.REG_WEIGHT, n.MARGIN)  # checked even at weight 0 (off)
        return term if term.weight > 0 else None


@KD_TERM_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class RPNBoundedRegression(_BoundedRegression):
    """loss_rpn_kd_reg: nu * L_b over the positive anchors, normalised like Detectron2's
    RPN losses.

    Args:
        mode, weight, margin: from KD.RPN (see _BoundedRegression).
    """

    loss_name: ClassVar[str] = "loss_rpn_kd_reg"
    needs: ClassVar[Tuple[str, ...]] = ("rpn",)
    node: ClassVar[str] = "RPN"
    lazy_name: ClassVar[str] = "rpn_bounded_regression"

    def _inputs(self, step):
        _check_rpn_shapes(step)
        pos = torch.stack(step.rpn.gt_labels) == 1
        box2box = step.student.proposal_generator.box2box_transform
        y = encode_deltas(box2box, Boxes.cat(step.rpn.anchors).tensor,
                          torch.stack(step.rpn.gt_boxes))  # (N, R, 4)
        # An image without ground truth has zero-size matched boxes, hence infinite targets
        # on anchors that are never positive: zero them so that inf * 0 makes no NaN.
        y = torch.where(pos.unsqueeze(-1), y, 0.0)
        y = y.flatten(0, 1)
        r_t = closest_teacher([cat(t.rpn_deltas, dim=1).flatten(0, 1)
                               for _, t in step.all_teachers()], y)
        return cat(step.rpn.deltas, dim=1).flatten(0, 1), r_t, y, pos.flatten()

    def __call__(self, step, module=None):
        r_s, r_t, y, pos = self._inputs(step)
        per_box = _per_box_reg(self.mode, r_s, r_t, y, self.margin)
        return self.weight * (per_box * pos.to(per_box.dtype)).sum() / _rpn_normalizer(step)

    def diagnostics(self, step, module=None):
        r_s, r_t, y, pos = self._inputs(step)
        pos = pos.float()
        active = _bound_active(r_s, r_t, y, self.margin)
        return {"rpn_bound_active_frac": (active * pos).sum() / pos.sum().clamp(min=1)}


@KD_TERM_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class ROISoftLabel(_SoftLabel):
    """loss_roi_kd_cls: (1 - mu) * class-weighted soft CE over all sampled ROIs
    (background is the LAST of the K+1 columns, as in Detectron2).

    Args:
        mu, temperature, bg_weight: from KD.ROI (see _SoftLabel).
    """

    loss_name: ClassVar[str] = "loss_roi_kd_cls"
    needs: ClassVar[Tuple[str, ...]] = ("roi",)
    node: ClassVar[str] = "ROI"
    lazy_name: ClassVar[str] = "roi_soft_label"
    hard_loss: ClassVar[str] = "loss_cls"

    def __call__(self, step, module=None):
        k = step.student.roi_heads.num_classes
        w = class_weights(k + 1, bg_index=k, bg_weight=self.bg_weight,
                          device=step.roi.scores.device)
        scores = step.roi.scores
        probs, columns = student_class_probs(step, self.temperature)
        if columns is not None:  # a class some teacher lacks is left out of the soft loss
            probs = probs[:, columns] / probs[:, columns].sum(-1, keepdim=True)
            scores, w = scores[:, columns], w[columns]
        return (1 - self.mu) * soft_cross_entropy_to_probs(scores, probs, self.temperature,
                                                           weight=w)


@KD_TERM_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class ROIBoundedRegression(_BoundedRegression):
    """loss_roi_kd_reg: nu * L_b over foreground ROIs, with the deltas of the ground-truth
    class and Detectron2's normaliser (the number of sampled ROIs).

    Args:
        mode, weight, margin: from KD.ROI (see _BoundedRegression).
    """

    loss_name: ClassVar[str] = "loss_roi_kd_reg"
    needs: ClassVar[Tuple[str, ...]] = ("roi",)
    node: ClassVar[str] = "ROI"
    lazy_name: ClassVar[str] = "roi_bounded_regression"

    def _inputs(self, step):
        proposals = step.roi.proposals
        k = step.student.roi_heads.num_classes
        s_b2b = step.student.roi_heads.box_predictor.box2box_transform
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor
                        for p in proposals], dim=0)
        r_s = select_class_deltas(step.roi.deltas, gt_classes)
        y = encode_deltas(s_b2b, boxes, gt_boxes)
        fg = (gt_classes >= 0) & (gt_classes < k)
        r_ts = []
        for teacher, t in step.all_teachers():
            t_b2b = teacher.roi_heads.box_predictor.box2box_transform
            t_classes = gt_classes
            if t.class_map is not None:  # the mapped class's deltas; none for a missing one
                t_classes = t.class_map.teacher_classes(gt_classes)
                fg = fg & (t_classes >= 0)
            r_t = select_class_deltas(t.box_deltas, t_classes.clamp(min=0))
            if tuple(s_b2b.weights) != tuple(t_b2b.weights):
                # Re-express the teacher's boxes in the student's delta coding.
                r_t = encode_deltas(s_b2b, boxes, t_b2b.apply_deltas(r_t, boxes))
            r_ts.append(r_t)
        return r_s, closest_teacher(r_ts, y), y, fg

    def __call__(self, step, module=None):
        r_s, r_t, y, fg = self._inputs(step)
        per_box = _per_box_reg(self.mode, r_s, r_t, y, self.margin)
        return self.weight * (per_box * fg.to(per_box.dtype)).sum() / max(fg.numel(), 1)

    def diagnostics(self, step, module=None):
        r_s, r_t, y, fg = self._inputs(step)
        fg = fg.float()
        active = _bound_active(r_s, r_t, y, self.margin)
        return {"roi_bound_active_frac": (active * fg).sum() / fg.sum().clamp(min=1),
                "roi_fg_frac": fg.mean()}


@KD_TERM_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class Hint(KDTerm):
    """loss_hint: gamma * mean over feature pairs of the imitation loss of the adapted
    student map against the teacher's (KD.HINT.*).

    Args:
        weight: KD.HINT.WEIGHT, gamma.
        pairs: (student feature, teacher feature) pairs, from KD.HINT.STUDENT_FEATURES and
            TEACHER_FEATURES.
        adapter: KD.HINT.ADAPTER, "conv1x1" or "none".
        resize: KD.HINT.RESIZE, "interpolate" or "error" on a size mismatch.
        loss: KD.HINT.LOSS, "mse" (Chen et al.'s hint) or "pkd" (both maps standardised
            per channel first; PKD, Cao et al. NeurIPS 2022).
        mask: KD.HINT.MASK, "none" or "gt": cells inside ground-truth boxes (FGFI, Wang et
            al. CVPR 2019).
        mask_bg_weight: KD.HINT.MASK_BG_WEIGHT, the weight of the background mean with
            mask "gt" (DeFeat, Guo et al. CVPR 2021).
        pair_by: KD.HINT.PAIR_BY, "name" (the pairs as given) or "stride": each student
            feature imitates the teacher feature that covers the image at its stride (times
            2^k for a student at 1/2^k resolution), found when the models are built, for a
            teacher whose outputs are named otherwise; its pairs then name the student
            features only (teacher side "").
    """

    weight: float = 0.5
    pairs: Tuple[Tuple[str, str], ...] = tuple((f, f) for f in ("p2", "p3", "p4", "p5", "p6"))
    adapter: str = "conv1x1"
    resize: str = "interpolate"
    loss: str = "mse"
    mask: str = "none"
    mask_bg_weight: float = 0.0
    pair_by: str = "name"
    loss_name: ClassVar[str] = "loss_hint"
    module_name: ClassVar[Optional[str]] = "adapters"
    node: ClassVar[str] = "HINT"
    lazy_name: ClassVar[str] = "hint"
    yacs_keys: ClassVar[Dict[str, str]] = {
        "weight": "WEIGHT", "pairs": "STUDENT_FEATURES/TEACHER_FEATURES", "adapter": "ADAPTER",
        "resize": "RESIZE", "loss": "LOSS", "mask": "MASK", "mask_bg_weight": "MASK_BG_WEIGHT",
        "pair_by": "PAIR_BY"}

    def __post_init__(self):
        self._check_number("weight", 0.0, _MAX_WEIGHT, usual=(0.0, _USUAL_WEIGHT))
        def is_list(x):  # a LazyConfig hands in OmegaConf lists
            return isinstance(x, Sequence) and not isinstance(x, str)

        self._check_choice("pair_by", ("name", "stride"))
        pairs = list(self.pairs) if is_list(self.pairs) else None
        if pairs and self.pair_by == "stride":  # student names alone are pairs to resolve
            pairs = [(p, "") if isinstance(p, str) else p for p in pairs]
        if not pairs or not all(is_list(p) and len(p) == 2 and all(isinstance(f, str) for f in p)
                                for p in pairs):
            raise ValueError(f"{self.setting('pairs')} must be a non-empty list of (student "
                             f"feature, teacher feature) name pairs, got {self.pairs!r}.")
        if self.pair_by == "stride" and any(t for _, t in pairs):
            raise ValueError(f"{self.setting('pair_by')} 'stride' finds the teacher features "
                             f"itself: give the student features only, got {self.pairs!r}.")
        # Lists from a LazyConfig (or YAML) become the hashable tuples the settings are.
        object.__setattr__(self, "pairs", tuple(tuple(p) for p in pairs))
        self._check_choice("adapter", ("conv1x1", "none"))
        self._check_choice("resize", ("interpolate", "error"))
        self._check_choice("loss", ("mse", "pkd"))
        self._check_choice("mask", ("none", "gt"))
        self._check_number("mask_bg_weight", 0.0, _MAX_WEIGHT)

    @classmethod
    def from_config(cls, cfg):
        h = cfg.KD.HINT
        if not h.ENABLED:
            return None
        if h.PAIR_BY == "stride" and h.TEACHER_FEATURES:
            raise ValueError("KD.HINT.TEACHER_FEATURES must be [] with KD.HINT.PAIR_BY "
                             "'stride' (the teacher features are found by stride), got "
                             f"{list(h.TEACHER_FEATURES)}.")
        if h.PAIR_BY != "stride" and len(h.STUDENT_FEATURES) != len(h.TEACHER_FEATURES):
            raise ValueError(
                "KD.HINT.STUDENT_FEATURES/TEACHER_FEATURES need the same length (pairs), got "
                f"{list(h.STUDENT_FEATURES)} and {list(h.TEACHER_FEATURES)}.")
        pairs = (tuple(h.STUDENT_FEATURES) if h.PAIR_BY == "stride"
                 else tuple(zip(h.STUDENT_FEATURES, h.TEACHER_FEATURES)))
        term = cls(h.WEIGHT, pairs, h.ADAPTER, h.RESIZE, h.LOSS, h.MASK, h.MASK_BG_WEIGHT,
                   h.PAIR_BY)  # checked even at weight 0
        return term if term.weight > 0 else None

    def bind(self, student_shapes, teacher_shapes: List[Dict], shift: int = 0) -> "Hint":
        """With pair_by "stride", the term with each pair's teacher feature found: the one
        of stride (student stride) * 2^shift, the same name in every teacher."""
        if self.pair_by != "stride":
            return self
        pairs = []
        for s, _ in self.pairs:
            if s not in student_shapes:
                raise ValueError(f"KD.HINT.STUDENT_FEATURES: {s!r} is not a student backbone "
                                 f"output; available: {sorted(student_shapes)}")
            want = student_shapes[s].stride * 2 ** shift
            found = {n for shapes in teacher_shapes for n, spec in shapes.items()
                     if spec.stride == want}
            name = next(iter(found)) if len(found) == 1 else None
            if name is None or any(name not in shapes or shapes[name].stride != want
                                   for shapes in teacher_shapes):
                strides = sorted({f"{n} ({spec.stride})" for shapes in teacher_shapes
                                  for n, spec in shapes.items()})
                raise ValueError(
                    f"{self.setting('pair_by')} 'stride': the student's {s!r} (stride "
                    f"{student_shapes[s].stride}) needs one teacher feature of stride {want}"
                    f" in every teacher, found {sorted(found) or 'none'}; the teachers' "
                    f"features (stride): {strides}. Name the pairs instead.")
            pairs.append((s, name))
        logger.info("KD.HINT.PAIR_BY stride: %s",
                    ", ".join(f"{s} -> {t}" for s, t in pairs))
        return dataclasses.replace(self, pairs=tuple(pairs), pair_by="name")

    def build_module(self, student_shapes, teacher_shapes):
        """HintAdapters for one teacher (state_dict keys adapters.*); a ModuleList of one
        HintAdapters per teacher for several."""
        adapters = [HintAdapters(list(self.pairs), student_shapes, shapes, self.adapter,
                                 self.resize) for shapes in teacher_shapes]
        return adapters[0] if len(adapters) == 1 else nn.ModuleList(adapters)

    def _per_pair(self, step, module):
        """{pair: imitation loss}, averaged over the teachers (each through its adapters)."""
        norm = "pkd" if self.loss == "pkd" else "none"
        modules = module if isinstance(module, nn.ModuleList) else [module]
        total = {}
        for adapters, (_, t) in zip(modules, step.all_teachers()):
            masks = None
            if self.mask == "gt":
                device = step.roi.scores.device
                masks = {f: gt_box_masks(step.gt_instances, step.image_size,
                                         tuple(t.features[f].shape[-2:]), device)
                         for _, f in self.pairs}
            for k, v in adapters(step.features, t.features, norm, masks,
                                 self.mask_bg_weight).items():
                total[k] = total[k] + v if k in total else v
        return {k: v / len(modules) for k, v in total.items()}

    def __call__(self, step, module):
        per_pair = self._per_pair(step, module)
        return self.weight * sum(per_pair.values()) / len(per_pair)

    def diagnostics(self, step, module):
        return {f"hint/{k}": v for k, v in self._per_pair(step, module).items()}


# ---- weight inheritance (FGD, Yang et al. CVPR 2022) ------------------------------------


def _own_tensors(m: nn.Module) -> Dict[str, torch.Tensor]:
    """A module's own parameters and persistent buffers (what its state_dict holds)."""
    bufs = ((k, v) for k, v in m._buffers.items()
            if v is not None and k not in m._non_persistent_buffers_set)
    params = ((k, v) for k, v in m._parameters.items() if v is not None)
    return dict(itertools.chain(params, bufs))


@torch.no_grad()
def inherit_from_teacher(student: nn.Module, teacher: nn.Module) -> List[str]:
    """Copy into every student module whose own tensors have the names and shapes of the
    teacher's module of the same name; returns the names of the modules copied.

    FGD's "inheriting strategy" (yzd-v/FGD, init_student): a student that shares the
    teacher's backbone, neck or head starts from the teacher's trained weights there.
    Non-persistent buffers (anchors, pixel mean/std) are never copied.

    Args:
        student: the model copied into.
        teacher: the model copied from (unchanged).
    """
    teacher_modules = dict(teacher.named_modules())
    copied = []
    for name, m in student.named_modules():
        own = _own_tensors(m)
        t = teacher_modules.get(name)
        if not own or t is None:
            continue
        t_own = _own_tensors(t)
        if set(own) == set(t_own) and all(own[k].shape == t_own[k].shape for k in own):
            for k, v in own.items():
                v.copy_(t_own[k])
            copied.append(name)
    return copied
