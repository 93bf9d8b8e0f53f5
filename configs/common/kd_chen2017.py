# Chen et al. (NeurIPS 2017)'s detection KD terms with kd_det's defaults (the yacs keys
# KD.RPN / KD.ROI / KD.HINT in kd_det/config.py: mu 0.5, T 1, background weight 1.5,
# nu 0.5, margin 0, gamma 0.5, a 1x1 adapter per FPN level). A LazyConfig KD model takes
# `kd_terms` as its terms: change one with e.g. `model.kd_terms.hint.weight=1.0`, turn it
# off with `model.kd_terms.hint=None`.
from detectron2.config import LazyCall as L

from kd_det.modeling.kd_terms import (
    Hint,
    ROIBoundedRegression,
    ROISoftLabel,
    RPNBoundedRegression,
    RPNSoftLabel,
    term_list,
)

kd_terms = L(term_list)(
    rpn_soft_label=L(RPNSoftLabel)(mu=0.5, temperature=1.0, bg_weight=1.5),
    rpn_bounded_regression=L(RPNBoundedRegression)(mode="bounded", weight=0.5, margin=0.0),
    roi_soft_label=L(ROISoftLabel)(mu=0.5, temperature=1.0, bg_weight=1.5),
    roi_bounded_regression=L(ROIBoundedRegression)(mode="bounded", weight=0.5, margin=0.0),
    hint=L(Hint)(weight=0.5, pairs=[[f, f] for f in ("p2", "p3", "p4", "p5", "p6")]),
)
