"""The RPN and ROI distillation terms of Chen et al., on Detectron2's tensors.

Both work on what the student has already labelled and sampled (anchors, ROIs), and use
masks instead of boolean indexing and never read a value back, so that they add no
host-device synchronisation.
"""
from typing import Dict, List

import torch
from detectron2.layers import cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes

from ..losses import (
    binary_soft_cross_entropy,
    bounded_l2_loss,
    class_weights,
    soft_cross_entropy,
    teacher_l2_loss,
)

__all__ = ["rpn_kd_losses", "roi_kd_losses", "select_class_deltas", "encode_deltas"]


def encode_deltas(box2box: Box2BoxTransform, src: torch.Tensor, dst: torch.Tensor):
    """Box2BoxTransform.get_deltas(src, dst), broadcast over leading dims and without its
    validity assert, whose .item() makes the host wait for the device on every call (the
    boxes here are the student's anchors and sampled ROIs, valid by construction)."""

    def centres_and_sizes(b):
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        return b[..., 0] + 0.5 * w, b[..., 1] + 0.5 * h, w, h

    sx, sy, sw, sh = centres_and_sizes(src)
    tx, ty, tw, th = centres_and_sizes(dst)
    wx, wy, ww, wh = box2box.weights
    return torch.stack((wx * (tx - sx) / sw, wy * (ty - sy) / sh,
                        ww * torch.log(tw / sw), wh * torch.log(th / sh)), dim=-1)


def _reg_term(mode: str, r_s, r_t, y, margin: float):
    """Per-box regression-distillation loss (no reduction)."""
    if mode == "bounded":
        return bounded_l2_loss(r_s, r_t, y, margin=margin, reduction="none")
    return teacher_l2_loss(r_s, r_t, reduction="none")


def rpn_kd_losses(
    cfg_node,
    anchors: List[Boxes],
    gt_labels: List[torch.Tensor],
    gt_boxes: List[torch.Tensor],
    s_logits: List[torch.Tensor],
    s_deltas: List[torch.Tensor],
    t_logits: List[torch.Tensor],
    t_deltas: List[torch.Tensor],
    box2box: Box2BoxTransform,
    normalizer: float,
) -> Dict[str, torch.Tensor]:
    """loss_rpn_kd_cls over sampled anchors, loss_rpn_kd_reg over positive anchors.

    Normalised like Detectron2's RPN losses (by batch_size_per_image * num_images).
    """
    labels = torch.stack(gt_labels)  # (N, R): 1 fg, 0 bg, -1 ignored
    losses = {}
    if cfg_node.MU < 1:
        per_anchor = binary_soft_cross_entropy(
            cat(s_logits, dim=1), cat(t_logits, dim=1), cfg_node.TEMPERATURE,
            bg_weight=cfg_node.BG_WEIGHT, reduction="none")
        valid = (labels >= 0).to(per_anchor.dtype)
        losses["loss_rpn_kd_cls"] = (1 - cfg_node.MU) * (per_anchor * valid).sum() / normalizer
    if cfg_node.REG_MODE != "none" and cfg_node.REG_WEIGHT > 0:
        pos = labels == 1
        y = encode_deltas(box2box, Boxes.cat(anchors).tensor, torch.stack(gt_boxes))  # (N, R, 4)
        # An image without ground truth has zero-size matched boxes, hence infinite targets
        # on anchors that are never positive: zero them so that inf * 0 makes no NaN.
        y = torch.where(pos.unsqueeze(-1), y, 0.0)
        r_s, r_t = cat(s_deltas, dim=1), cat(t_deltas, dim=1)
        per_box = _reg_term(cfg_node.REG_MODE, r_s.flatten(0, 1), r_t.flatten(0, 1),
                            y.flatten(0, 1), cfg_node.MARGIN)
        pos = pos.flatten().to(per_box.dtype)
        losses["loss_rpn_kd_reg"] = cfg_node.REG_WEIGHT * (per_box * pos).sum() / normalizer
    return losses


def select_class_deltas(deltas: torch.Tensor, classes: torch.Tensor, box_dim: int = 4):
    """(R, K*B) or (R, B) deltas -> (R, B) deltas of each ROI's class (clamped to K-1 for
    background ROIs, whose rows must be masked out by the caller)."""
    if deltas.shape[1] == box_dim:
        return deltas
    k = deltas.shape[1] // box_dim
    idx = classes.clamp(max=k - 1).view(-1, 1, 1).expand(-1, 1, box_dim)
    return deltas.view(-1, k, box_dim).gather(1, idx).squeeze(1)


def roi_kd_losses(
    cfg_node,
    proposals,
    s_scores: torch.Tensor,
    s_deltas: torch.Tensor,
    t_scores: torch.Tensor,
    t_deltas: torch.Tensor,
    s_box2box: Box2BoxTransform,
    t_box2box: Box2BoxTransform,
    num_classes: int,
) -> Dict[str, torch.Tensor]:
    """loss_roi_kd_cls over all sampled ROIs, loss_roi_kd_reg over foreground ROIs.

    Background is the LAST of the K+1 columns (Detectron2). Regression uses the deltas of
    the ground-truth class and Detectron2's normaliser (number of sampled ROIs).
    """
    losses = {}
    if cfg_node.MU < 1:
        w = class_weights(num_classes + 1, bg_index=num_classes, bg_weight=cfg_node.BG_WEIGHT,
                          device=s_scores.device)
        losses["loss_roi_kd_cls"] = (1 - cfg_node.MU) * soft_cross_entropy(
            s_scores, t_scores, cfg_node.TEMPERATURE, weight=w)
    if cfg_node.REG_MODE != "none" and cfg_node.REG_WEIGHT > 0:
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor
                        for p in proposals], dim=0)
        r_s = select_class_deltas(s_deltas, gt_classes)
        r_t = select_class_deltas(t_deltas, gt_classes)
        if tuple(s_box2box.weights) != tuple(t_box2box.weights):
            # Re-express the teacher's boxes in the student's delta coding.
            r_t = encode_deltas(s_box2box, boxes, t_box2box.apply_deltas(r_t, boxes))
        y = encode_deltas(s_box2box, boxes, gt_boxes)
        per_box = _reg_term(cfg_node.REG_MODE, r_s, r_t, y, cfg_node.MARGIN)
        fg = ((gt_classes >= 0) & (gt_classes < num_classes)).to(per_box.dtype)
        losses["loss_roi_kd_reg"] = (
            cfg_node.REG_WEIGHT * (per_box * fg).sum() / max(gt_classes.numel(), 1)
        )
    return losses
