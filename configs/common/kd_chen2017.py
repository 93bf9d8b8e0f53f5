# Chen et al. (NeurIPS 2017)'s detection KD terms at kd_det's defaults (each term's
# dataclass defaults, the same values as the yacs keys KD.RPN / KD.ROI / KD.HINT: mu 0.5,
# T 1, background weight 1.5, nu 0.5, margin 0, gamma 0.5, a 1x1 adapter per FPN level
# p2..p6; docs/keys.md). A LazyConfig KD model takes `kd_terms` as its terms: change one
# with e.g. `model.kd_terms.hint.weight=1.0`, turn it off with `model.kd_terms.hint=None`.
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
    rpn_soft_label=L(RPNSoftLabel)(),
    rpn_bounded_regression=L(RPNBoundedRegression)(),
    roi_soft_label=L(ROISoftLabel)(),
    roi_bounded_regression=L(ROIBoundedRegression)(),
    hint=L(Hint)(),
)
