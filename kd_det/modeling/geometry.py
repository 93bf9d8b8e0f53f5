"""Where a student's and a teacher's FPN levels and anchors meet: the level shift of a
student at lower input resolution, and whether two RPNs can be compared anchor by anchor.
Config checks, the teacher and the KD terms all read it, so it imports none of them."""
import math

import torch

__all__ = ["level_shift", "rpn_alignment_problem"]


def level_shift(input_scale: float) -> int:
    """s with input_scale = 1 / 2**s: how many FPN levels the student's maps sit below the
    teacher's of the same size (KD.STUDENT.INPUT_SCALE)."""
    s = round(math.log2(1.0 / input_scale)) if input_scale > 0 else -1
    if s < 0 or 2.0 ** -s != input_scale:
        raise ValueError(f"KD.STUDENT.INPUT_SCALE (input_scale) must be 1, 0.5, 0.25, ... "
                         f"(1 / 2**s, so that FPN levels line up), got {input_scale}.")
    return s


def rpn_alignment_problem(student_rpn, teacher_rpn, student_shapes, teacher_shapes,
                          level_shift: int = 0) -> str:
    """Why the two RPNs cannot be compared anchor by anchor ('' when they can).

    With `level_shift` s (a student at 1/2**s of the teacher's resolution), the student's
    level k is compared with the teacher's level k + s in the teacher's pixels; the
    teacher's levels past its coarsest are that level's strides and anchors doubled (as
    FPN's max-pool level extends p5 to p6)."""
    s_ag, t_ag = student_rpn.anchor_generator, teacher_rpn.anchor_generator
    if len(student_rpn.in_features) != len(teacher_rpn.in_features):
        return (f"RPN levels differ: student {student_rpn.in_features}, "
                f"teacher {teacher_rpn.in_features}")
    up = 2 ** level_shift

    def shifted(values):  # the teacher's per-level values from level s on, extended
        return [values[min(k, len(values) - 1)] * 2 ** max(0, k - len(values) + 1)
                for k in range(level_shift, level_shift + len(values))]

    s_str = [student_shapes[f].stride * up for f in student_rpn.in_features]
    t_str = shifted([teacher_shapes[f].stride for f in teacher_rpn.in_features])
    if s_str != t_str:
        shift = f" (student at 1/{up} resolution)" if level_shift else ""
        return f"RPN feature strides differ{shift}: student {s_str}, teacher {t_str}"
    if ([x * up for x in s_ag.strides] != shifted(list(t_ag.strides))
            or s_ag.offset != t_ag.offset):
        return "anchor generator strides or offsets differ (MODEL.ANCHOR_GENERATOR.*)"
    s_cells = [a * up for a in s_ag.cell_anchors]
    t_cells = shifted(list(t_ag.cell_anchors))
    if len(s_cells) != len(t_cells) or any(
        a.shape != b.shape or not torch.allclose(a.cpu(), b.cpu())
        for a, b in zip(s_cells, t_cells)
    ):
        return "anchor sizes or aspect ratios differ (MODEL.ANCHOR_GENERATOR.SIZES/ASPECT_RATIOS)"
    if s_ag.box_dim != t_ag.box_dim:
        return "anchor box dimensions differ"
    return ""
