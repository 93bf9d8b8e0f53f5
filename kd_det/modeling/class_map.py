"""A teacher of a wider label space: which teacher class each student class is.

A COCO teacher (80 classes) can teach a 3-class student once each student class names
its teacher class. The ROI soft labels then take the teacher's probabilities of the
mapped classes and add every unmapped class's probability to background: those objects
are background for the student, so that is the target the student should match. The
bounded regression reads the teacher's deltas of the mapped class. The RPN terms are
class-agnostic and need nothing.

A student class the teacher lacks is an error unless allowed; then it is left out of the
soft loss: both distributions are taken over the other columns (the teacher puts no mass
on it, so its target is still a distribution), and the hard loss alone teaches it.
"""
import dataclasses
import difflib
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = ["ClassMap", "resolve_class_map", "InStudentClasses"]

MapSpec = Union[str, Sequence[int]]


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """teacher_index[j]: the teacher class of student class j (None: the teacher lacks it).

    Args:
        teacher_index: one entry per student class.
        num_teacher_classes: the teacher's class count (its background is the column after).
    """

    teacher_index: Tuple[Optional[int], ...]
    num_teacher_classes: int

    @property
    def num_student_classes(self) -> int:
        return len(self.teacher_index)

    def is_identity(self) -> bool:
        return (self.num_teacher_classes == self.num_student_classes
                and all(t == j for j, t in enumerate(self.teacher_index)))

    def columns(self) -> Tuple[int, ...]:
        """The student columns (K_s + 1, background last) the soft loss covers: every class
        the teacher has, and background. Plain Python, so selecting them syncs nothing."""
        return tuple(j for j, t in enumerate(self.teacher_index) if t is not None) + (
            self.num_student_classes,)

    def fold_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """(N, K_t + 1) teacher probabilities -> (N, K_s + 1): mapped columns taken, every
        unmapped teacher class added to background, a missing student class 0."""
        k_t = self.num_teacher_classes
        mapped = {t for t in self.teacher_index if t is not None}
        unmapped = [c for c in range(k_t) if c not in mapped]
        zero = probs.new_zeros(probs.shape[0])
        cols = [probs[:, t] if t is not None else zero for t in self.teacher_index]
        cols.append(probs[:, k_t] + probs[:, unmapped].sum(dim=1))
        return torch.stack(cols, dim=1)

    def teacher_classes(self, student_classes: torch.Tensor) -> torch.Tensor:
        """Student class indices -> the teacher's (-1 for a missing class, and for
        background, student index K_s)."""
        table = torch.tensor([-1 if t is None else t for t in self.teacher_index] + [-1],
                             device=student_classes.device)
        return table[student_classes.clamp(min=0, max=self.num_student_classes)]

    def student_index(self) -> Tuple[int, ...]:
        """Per teacher class, the student class it is (-1: unmapped)."""
        table = [-1] * self.num_teacher_classes
        for j, t in enumerate(self.teacher_index):
            if t is not None:
                table[t] = j
        return tuple(table)

    def describe(self, student_names: Sequence[str], teacher_names: Sequence[str]) -> str:
        """What the log says: each mapping, the missing classes, and how many teacher
        classes are folded into background."""
        pairs = [f"{s} <- {teacher_names[t]}" for s, t in zip(student_names, self.teacher_index)
                 if t is not None]
        missing = [s for s, t in zip(student_names, self.teacher_index) if t is None]
        folded = [n for c, n in enumerate(teacher_names) if c not in set(self.teacher_index)]
        text = f"mapped {', '.join(pairs)}"
        if missing:
            text += f"; not in the teacher (left out of the soft loss): {', '.join(missing)}"
        if folded:
            shown = ", ".join(folded[:10]) + (f" and {len(folded) - 10} more"
                                               if len(folded) > 10 else "")
            text += f"; folded into background: {shown}"
        return text


def resolve_class_map(spec: MapSpec, student_names: Optional[Sequence[str]],
                      teacher_names: Optional[Sequence[str]], num_student: int,
                      num_teacher: int, allow_missing: bool = False,
                      key: str = "KD.TEACHER.CLASS_MAP") -> ClassMap:
    """The ClassMap `spec` gives: "by_name" (the datasets' class names) or a list of teacher
    class indices, one per student class (-1: the teacher lacks that class). Refused,
    naming `key`: a wrong length, an index out of range, two student classes on one teacher
    class, a missing class without `allow_missing`, "by_name" without class names."""
    if isinstance(spec, str):
        if spec != "by_name":
            raise ValueError(f"{key}: {spec!r}; give 'by_name' or a list of {num_student} "
                             "teacher class indices (-1 for a class the teacher lacks).")
        if student_names is None or teacher_names is None:
            raise ValueError(f"{key} 'by_name' needs the class names of both training sets "
                             "(register the datasets, or give the indices as a list).")
        index: List[Optional[int]] = []
        for name in student_names:
            if name in teacher_names:
                index.append(list(teacher_names).index(name))
            else:
                index.append(None)
                close = difflib.get_close_matches(name, list(teacher_names), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                if not allow_missing:
                    raise ValueError(
                        f"{key}: student class {name!r} is not among the teacher's classes"
                        f"{hint}. Map it by index, or set KD.TEACHER.ALLOW_MISSING_CLASSES "
                        "True to leave it out of the soft loss.")
    else:
        spec = [int(i) for i in spec]
        if len(spec) != num_student:
            raise ValueError(f"{key}: {len(spec)} indices for {num_student} student classes; "
                             "give one teacher class index per student class.")
        bad = [i for i in spec if not -1 <= i < num_teacher]
        if bad:
            raise ValueError(f"{key}: indices {bad} outside the teacher's 0..{num_teacher - 1} "
                             "(-1: the teacher lacks that class).")
        index = [None if i == -1 else i for i in spec]
        if None in index and not allow_missing:
            names = student_names or [str(j) for j in range(num_student)]
            missing = [names[j] for j, t in enumerate(index) if t is None]
            raise ValueError(f"{key}: student classes {missing} have no teacher class (-1); "
                             "set KD.TEACHER.ALLOW_MISSING_CLASSES True to leave them out of "
                             "the soft loss.")
    taken = [t for t in index if t is not None]
    twice = sorted({t for t in taken if taken.count(t) > 1})
    if twice:
        raise ValueError(f"{key}: teacher classes {twice} are mapped to two student classes; "
                         "each teacher class teaches one student class.")
    return ClassMap(tuple(index), num_teacher)


class InStudentClasses(nn.Module):
    """A detector of a wider label space, scored in the student's classes: its
    detections of mapped classes renumbered to the student's, the others dropped. What an
    evaluator of the student's test set must see of the teacher (a COCO teacher's "cat"
    box is no detection of a 3-class student's classes)."""

    def __init__(self, detector: nn.Module, class_map: ClassMap):
        super().__init__()
        self.detector = detector
        self.register_buffer("_to_student", torch.tensor(class_map.student_index()),
                             persistent=False)
        # The detector's mode, so that an evaluation (inference_context restores the mode
        # it found) leaves a frozen teacher in eval mode.
        self.train(detector.training)

    def forward(self, batched_inputs):
        outputs = self.detector(batched_inputs)
        for out in outputs:
            inst = out["instances"]
            cls = self._to_student.to(inst.pred_classes.device)[inst.pred_classes]
            inst = inst[cls >= 0]
            inst.pred_classes = cls[cls >= 0]
            out["instances"] = inst
        return outputs
