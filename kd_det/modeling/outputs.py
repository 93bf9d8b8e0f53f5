"""What a DistillRCNN step hands the KD terms from the student's and the teachers' passes.

A module of its own so that the terms (kd_terms) and the model (distill_rcnn) can both
name these types without importing each other.
"""
from typing import Dict, List, NamedTuple, Optional

import torch
from detectron2.structures import Boxes, Instances

from .class_map import ClassMap

__all__ = ["TeacherOutputs", "StudentRPN", "StudentROI"]


class TeacherOutputs(NamedTuple):
    """What one teacher pass gives the KD terms (None for a disabled term)."""

    features: Dict[str, torch.Tensor]
    rpn_logits: Optional[List[torch.Tensor]]
    rpn_deltas: Optional[List[torch.Tensor]]
    box_scores: Optional[torch.Tensor]
    box_deltas: Optional[torch.Tensor]
    # The teacher's classes in the student's label space (None: the same classes).
    class_map: Optional[ClassMap] = None


class StudentRPN(NamedTuple):
    """The student's RPN step: its anchors with their sampled labels, its raw outputs and
    its proposals."""

    anchors: List[Boxes]
    gt_labels: List[torch.Tensor]
    gt_boxes: List[torch.Tensor]
    logits: List[torch.Tensor]
    deltas: List[torch.Tensor]
    proposals: List[Instances]


class StudentROI(NamedTuple):
    """The student's box head on its sampled ROIs."""

    proposals: List[Instances]  # sampled, with gt_classes / gt_boxes
    scores: torch.Tensor
    deltas: torch.Tensor
