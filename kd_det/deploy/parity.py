"""Whether an export gives the eager model's detections: the same count per image, and
for each detection one of the same class with a score within 1e-4 and a box within 1e-3
relative or 0.5 px (or, at the cut of top-k or the score threshold, another of the
detections tied there)."""
from typing import Callable, Dict, List, Optional, Sequence

import torch

__all__ = ["ParityError", "match_detections", "detection_differences", "check_parity"]

BOX_REL, BOX_PX, SCORE_ABS = 1e-3, 0.5, 1e-4


class ParityError(RuntimeError):
    """The exported model's detections differ from the eager model's."""


def _as_float(dets):
    boxes, scores, classes = dets
    return boxes.float(), scores.float(), classes.long()


def match_detections(eager, exported) -> List[Optional[int]]:
    """For each eager detection, the index of its exported counterpart or None. Scores
    tied within the tolerance may come out of NMS and top-k in either order, so the match
    is one to one, greedy in eager's (score) order, not position by position."""
    (b0, s0, c0), (b1, s1, c1) = _as_float(eager), _as_float(exported)
    close = ((b1[None] - b0[:, None]).abs()
             <= torch.clamp(BOX_REL * b0.abs(), min=BOX_PX)[:, None]).all(-1)
    close &= (s1[None] - s0[:, None]).abs() <= SCORE_ABS
    close &= c1[None] == c0[:, None]
    used = torch.zeros(len(s1), dtype=torch.bool)
    matches = []
    for row in close:
        free = (row & ~used).nonzero().flatten()
        matches.append(int(free[0]) if len(free) else None)
        if len(free):
            used[free[0]] = True
    return matches


def _unmatched(eager, exported):
    """Eager and exported detections left without a counterpart, except those tied (within
    the score tolerance) with the lowest score kept: top-k and the score threshold cut
    between equal scores in either order, so which of them is kept is not a difference."""
    matches = match_detections(eager, exported)
    lost = [i for i, j in enumerate(matches) if j is None]
    extra = sorted(set(range(len(exported[1]))) - {j for j in matches if j is not None})
    if not lost:
        return [], []
    cut = float(eager[1].float().min())
    at_cut = all(float(eager[1][i]) - cut <= SCORE_ABS for i in lost) and all(
        float(exported[1][j]) - cut <= SCORE_ABS for j in extra)
    return ([], []) if at_cut else (lost, extra)


def detection_differences(eager, exported) -> List[str]:
    """What differs between two (boxes, scores, classes) of one image; [] when equal
    within the tolerances."""
    if len(eager[1]) != len(exported[1]):
        return [f"{len(exported[1])} detections instead of {len(eager[1])}"]
    lost, _ = _unmatched(eager, exported)
    if not lost:
        return []
    b0, s0, c0 = _as_float(eager)
    i = lost[0]
    return [f"{len(lost)} of {len(s0)} detections have no exported counterpart of the "
            f"same class, score within {SCORE_ABS} and box within {BOX_REL} relative or "
            f"{BOX_PX} px (the first: class {int(c0[i])}, score {float(s0[i]):.4f}, box "
            f"{[round(x, 1) for x in b0[i].tolist()]})"]


def check_parity(eager: Callable, exported: Callable, images: Sequence[torch.Tensor],
                 names: Sequence[str]) -> Dict:
    """Both models on every image; raises ParityError naming the images that differ,
    else returns what was compared and the largest differences of matched detections."""
    failures, max_box, max_score, count, cut_ties = [], 0.0, 0.0, 0, 0
    for image, name in zip(images, names):
        a, b = eager(image), exported(image)
        problems = detection_differences(a, b)
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}")
            continue
        (b0, s0, _), (b1, s1, _) = _as_float(a), _as_float(b)
        for i, j in enumerate(match_detections(a, b)):
            if j is None:
                cut_ties += 1
                continue
            max_box = max(max_box, float((b0[i] - b1[j]).abs().max()))
            max_score = max(max_score, abs(float(s0[i] - s1[j])))
        count += len(s0)
    if failures:
        raise ParityError(f"the export differs from the eager model on {len(failures)} of "
                          f"{len(images)} images: " + " | ".join(failures[:5]))
    return {"images": len(images), "detections": count, "max_box_diff_px": max_box,
            "max_score_diff": max_score, "other_of_tied_at_cut": cut_ties}
