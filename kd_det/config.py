"""KD.* configuration keys for DistillRCNN, with their defaults and validation.

Defaults follow Chen et al. (NeurIPS 2017): gamma (hint) = 0.5, T = 1, background weight
1.5, nu (bounded regression) = 0.5. mu and the margin m are not given in the paper;
re-implementations use mu in {0.5, 0.6} and m in {1e-5, 0.01, 0.2}; the defaults below
(0.5, 0.0) are documented choices, not the authors' confirmed values.
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_kd_config", "merge_kd_config_file", "validate_kd_config"]


def _add_distill_terms(node: CN) -> None:
    # The node's two terms on or off (LazyConfig: leave a term out of model.kd_terms, or
    # set it to None).
    node.ENABLED = True
    # L_cls = MU * L_hard + (1 - MU) * L_soft; the student's own hard loss is scaled by MU.
    node.MU = 0.5
    # T of both softmaxes (sigmoids for the RPN's objectness) in L_soft.
    node.TEMPERATURE = 1.0
    # Weight of the background class in the soft cross-entropy (1.0 = unweighted).
    node.BG_WEIGHT = 1.5
    # "bounded": teacher-bounded L2 to the ground truth; "l2": plain L2 to the teacher's
    # regression output (the paper's ablation baseline); "none": no regression KD term
    # (LazyConfig: set the term to None; its mode refuses "none").
    node.REG_MODE = "bounded"
    # nu in L_reg = smoothL1(R_s, y) + nu * L_b.
    node.REG_WEIGHT = 0.5
    # m: the bound applies while ||R_s - y||^2 + MARGIN > ||R_t - y||^2.
    node.MARGIN = 0.0


def add_kd_config(cfg: CN) -> None:
    """Add the KD node to a Detectron2 config. kd_det's MobileNetV2 and EfficientNet-Lite0
    backbones have their own keys (``add_mobilenet_config``, ``add_efficientnet_config``),
    added only by configs that use them."""
    _C = cfg
    _C.KD = CN()
    # The meta-architecture that the student is built as (from the same cfg).
    _C.KD.STUDENT_META_ARCHITECTURE = "GeneralizedRCNN"

    _C.KD.TEACHER = CN()
    # Teacher's own Detectron2 config: a YAML path, or a model-zoo name such as
    # "COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml".
    _C.KD.TEACHER.CONFIG_FILE = ""
    # Trained teacher weights (.pth / .pkl). Loaded strictly: any missing or unexpected
    # key is an error.
    _C.KD.TEACHER.WEIGHTS = ""
    # Extra "KEY VALUE" overrides applied to the teacher config, e.g. ["INPUT.FORMAT", "RGB"].
    _C.KD.TEACHER.OPTS = []
    # Evaluate the teacher on DATASETS.TEST once before the first KD step and log its AP,
    # so that a teacher that loaded wrong is caught at once.
    _C.KD.TEACHER.EVAL_BEFORE_TRAIN = True
    # The teacher's YAML is read as safe YAML (a !!python tag could run code); set True
    # only for a file you trust that needs such tags, on the command line or in code: a
    # config file that sets it is refused (merge_kd_config_file).
    _C.KD.TEACHER.ALLOW_UNSAFE_YAML = False
    # Several teachers (MEAL V2's ensemble idea, for detection): a list of
    # [CONFIG_FILE, WEIGHTS] pairs, used instead of KD.TEACHER.CONFIG_FILE/WEIGHTS (leave
    # those empty); OPTS, EVAL_BEFORE_TRAIN and ALLOW_UNSAFE_YAML apply to each. The soft
    # targets are the mean of the teachers' probabilities, the bounded regression uses,
    # per box, the teacher closest to the ground truth, and the hint imitates each teacher
    # through its own adapters (averaged).
    _C.KD.TEACHERS = []
    # A teacher of a wider label space (e.g. COCO's 80 classes for a 3-class student): one
    # teacher class index per student class (-1: a class the teacher lacks), or [] to map
    # by the training sets' class names when the class counts differ. The ROI soft labels
    # take the mapped classes' probabilities and add every other class's to background;
    # the bounded regression reads the mapped class's deltas (kd_det.modeling.class_map).
    _C.KD.TEACHER.CLASS_MAP = []
    # Leave a student class the teacher lacks out of the soft loss (the hard loss alone
    # teaches it) rather than refuse it.
    _C.KD.TEACHER.ALLOW_MISSING_CLASSES = False

    _C.KD.STUDENT = CN()
    # Weight inheritance (FGD, Yang et al. CVPR 2022, "inheriting strategy"): before
    # training, copy the teacher's weights into every student module whose parameters
    # have the teacher's names and shapes (the log lists the modules copied).
    _C.KD.STUDENT.INIT_FROM_TEACHER = False
    # The student's input resolution as a fraction of the teacher's: 1, 0.5, 0.25 (Chen et
    # al. Table 2: a half-resolution student from a full-resolution teacher). INPUT.* are
    # the teacher's sizes; the student's images and boxes are scaled inside the model (at
    # evaluation too), its FPN level k is distilled from the teacher's level
    # k + log2(1 / scale) (pair KD.HINT.*_FEATURES accordingly, e.g. p2 -> p3), and the
    # exported student config has INPUT.* sizes scaled.
    _C.KD.STUDENT.INPUT_SCALE = 1.0

    # The KD terms' weights rise linearly from 0 to 1 over this many iterations (0: off),
    # so that the imitation targets do not swamp a student whose heads are still random.
    _C.KD.WARMUP_ITERS = 0
    # Every this many iterations, log under kd_diag/ each loss's gradient norm on the
    # student, its ratio to the task losses', the fraction of boxes where the bounded
    # regression acts and the hint per feature level (0: off; costs one backward per loss).
    _C.KD.DIAGNOSTICS_PERIOD = 0

    # Pre-flight check of every training and test set before the first step (plain
    # detectors trained with kd_det too): image headers and boxes. "error" refuses the
    # first bad record naming the file; "drop" trains without bad boxes/images and lists
    # them in OUTPUT_DIR/preflight_<dataset>.json; "off" skips it. Larger datasets are
    # checked on a seeded sample of DATA_CHECK_MAX_IMAGES images.
    _C.KD.DATA_CHECK = "error"
    # The sample size of that check on a larger dataset (the unchecked images are listed).
    _C.KD.DATA_CHECK_MAX_IMAGES = 20000

    _C.KD.HINT = CN()
    # The hint term on or off (LazyConfig: model.kd_terms.hint=None).
    _C.KD.HINT.ENABLED = True
    # Pairs (student feature i, teacher feature i) of backbone outputs to imitate.
    _C.KD.HINT.STUDENT_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    # The teacher feature each student feature imitates (same length); [] with PAIR_BY
    # "stride".
    _C.KD.HINT.TEACHER_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    # "name": the pairs above; "stride": each student feature with the teacher feature of
    # its stride (x 2^k for a student at 1/2^k resolution), for a teacher named otherwise.
    _C.KD.HINT.PAIR_BY = "name"
    # "conv1x1": a 1x1 adaptation conv (used even when channels match, as in the paper);
    # "none": compare raw features (channels must match; the ablation baseline).
    _C.KD.HINT.ADAPTER = "conv1x1"
    # gamma in L = L_RPN + L_RCN + gamma * L_hint; L_hint is averaged over the pairs.
    _C.KD.HINT.WEIGHT = 0.5
    # Spatial size mismatch between a pair: "interpolate" (bilinear, student to teacher
    # size) or "error".
    _C.KD.HINT.RESIZE = "interpolate"
    # "mse": Chen et al.'s L2 hint; "pkd": both maps standardised per channel over
    # (N, H, W) first, then MSE / 2 (PKD, Cao et al. NeurIPS 2022): scale-free imitation.
    _C.KD.HINT.LOSS = "mse"
    # "none": every position; "gt": mean over positions inside ground-truth boxes (FGFI,
    # Wang et al. CVPR 2019) plus MASK_BG_WEIGHT x the mean over the rest (DeFeat, Guo et
    # al. CVPR 2021).
    _C.KD.HINT.MASK = "none"
    # With MASK "gt": the weight of the background positions' mean (0: foreground only).
    _C.KD.HINT.MASK_BG_WEIGHT = 0.0

    _C.KD.RPN = CN()
    _add_distill_terms(_C.KD.RPN)
    # When teacher and student anchors cannot be aligned: "error" or "disable" (RPN KD off).
    _C.KD.RPN.ON_MISMATCH = "error"

    _C.KD.ROI = CN()
    _add_distill_terms(_C.KD.ROI)


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{key}: {msg}")


def validate_kd_config(cfg: CN) -> None:
    """Refuse inconsistent KD settings of the config as a whole (teachers, class map,
    schedule) before any model is built; errors name the key. Each term checks its own
    settings when it is built (kd_det.modeling.kd_terms), for yacs and LazyConfig alike."""
    kd = cfg.KD
    if kd.TEACHERS:
        _check(not kd.TEACHER.CONFIG_FILE and not kd.TEACHER.WEIGHTS, "KD.TEACHERS",
               "is set, so KD.TEACHER.CONFIG_FILE and KD.TEACHER.WEIGHTS must be empty (list "
               "every teacher in KD.TEACHERS).")
        for i, pair in enumerate(kd.TEACHERS):
            _check(isinstance(pair, (list, tuple)) and len(pair) == 2 and all(pair),
                   f"KD.TEACHERS[{i}]", f"must be a [CONFIG_FILE, WEIGHTS] pair, got {pair!r}.")
    else:
        _check(bool(kd.TEACHER.CONFIG_FILE), "KD.TEACHER.CONFIG_FILE",
               "is empty; set it to the teacher's Detectron2 config (YAML path or model-zoo "
               "name), or list several teachers in KD.TEACHERS.")
        _check(bool(kd.TEACHER.WEIGHTS), "KD.TEACHER.WEIGHTS",
               "is empty; set it to the trained teacher's weights file.")
    _check(len(kd.TEACHER.OPTS) % 2 == 0, "KD.TEACHER.OPTS",
           f"must be KEY VALUE pairs, got {len(kd.TEACHER.OPTS)} items.")
    _check(all(isinstance(i, int) and not isinstance(i, bool) for i in kd.TEACHER.CLASS_MAP),
           "KD.TEACHER.CLASS_MAP", "must be teacher class indices, one per student class (-1: "
           "a class the teacher lacks), or [] to map by class name.")
    _check(kd.WARMUP_ITERS >= 0, "KD.WARMUP_ITERS", "must be >= 0.")
    _check(kd.DIAGNOSTICS_PERIOD >= 0, "KD.DIAGNOSTICS_PERIOD", "must be >= 0.")
    _check(kd.RPN.ON_MISMATCH in ("error", "disable"), "KD.RPN.ON_MISMATCH",
           "must be 'error' or 'disable'.")


def merge_kd_config_file(cfg: CN, path: str) -> None:
    """cfg.merge_from_file(path) as safe YAML, refusing a file (or a _BASE_ it names) that
    turns KD.TEACHER.ALLOW_UNSAFE_YAML on: the opt-in cannot sit in the kind of file it
    guards against. Command-line opts merged afterwards, or code, may set it."""
    before = cfg.KD.TEACHER.ALLOW_UNSAFE_YAML
    cfg.merge_from_file(path, allow_unsafe=False)
    if cfg.KD.TEACHER.ALLOW_UNSAFE_YAML and not before:
        raise ValueError(
            f"{path} sets KD.TEACHER.ALLOW_UNSAFE_YAML True; a config file cannot opt itself "
            "into unsafe YAML. Remove it from the file, and for a teacher YAML you trust "
            "pass `KD.TEACHER.ALLOW_UNSAFE_YAML True` on the command line (or set it in code).")
