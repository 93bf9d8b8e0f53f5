"""Config keys of the low-resolution face recognition trainer, on top of the auxiliary config."""
import os

from detectron2.config import CfgNode

from kd_det.auxiliary.classification.config import check_network_config, network_config
from kd_det.data import LR_SIZES, LRDegradation
from kd_det.losses import FEATURE_LOSSES

__all__ = ["METHODS", "add_face_config", "check_face_config"]

METHODS = ("none", "kd")
TEACHER_INPUTS = ("hr", "lr")


def add_face_config(cfg: CfgNode) -> CfgNode:
    """Add the FACE.* keys (method, data, LR augmentation, networks, KD weights, probes) to
    an auxiliary config (get_aux_cfg), with the Olivetti batch and warm-up."""
    cfg.OUTPUT_DIR = "./output/face"
    cfg.DATALOADER.BATCH_SIZE = 40
    cfg.SOLVER.WARMUP_ITERS = 20
    cfg.FACE = CfgNode()
    # "none" trains FACE.MODEL alone with CE (the student baseline, or a teacher);
    # "kd" distils a FACE.TEACHER run into FACE.MODEL.
    cfg.FACE.METHOD = "none"
    cfg.FACE.NUM_IDENTITIES = 40
    cfg.FACE.DATA = CfgNode()
    # Olivetti faces (MATLAB v5, key "faces": 4096 x 400, 40 people x 10 consecutive images).
    cfg.FACE.DATA.PATH = os.path.join("..", "shared", "data", "olivetti", "olivettifaces.mat")
    # Images of each identity held out for testing, then for validation (the search of
    # the KD weights and the learning curves; 0 = none); the rest train. Fixed by SPLIT_SEED.
    cfg.FACE.DATA.TEST_PER_IDENTITY = 3
    cfg.FACE.DATA.VAL_PER_IDENTITY = 2
    cfg.FACE.DATA.SPLIT_SEED = 0
    # Random horizontal flips of the training faces.
    cfg.FACE.DATA.FLIP = True
    # LR augmentation of the training set (kd_det.data.LRDegradation): the student's set.
    cfg.FACE.LR = CfgNode()
    cfg.FACE.LR.ENABLED = False
    cfg.FACE.LR.PROB = 0.4
    cfg.FACE.LR.SIZES = LR_SIZES
    cfg.FACE.LR.BLUR_PROB = 0.5
    # Range of the blur sigma, in pixels of the original 64x64 face.
    cfg.FACE.LR.BLUR_SIGMA = (0.5, 1.5)
    # Width of the L2-normalised face embedding, the same for teacher and student (MK-MMD
    # and the L2 alternative compare them directly).
    cfg.FACE.EMBED_DIM = 128
    # The network this run trains: the student, or a teacher when METHOD is "none".
    cfg.FACE.MODEL = network_config("cnn", (16, 32, 64, 128))
    cfg.FACE.TEACHER = network_config("resnet", (16, 32, 64, 128))
    # model_final.pth of a METHOD "none" run of the teacher network (METHOD "kd" only).
    cfg.FACE.TEACHER.WEIGHTS = ""
    cfg.FACE.KD = CfgNode()
    # What the teacher sees: "hr", the original face (the paper: it is never shown LR
    # faces), or "lr", the student's degraded copy (a teacher retrained on the LR set).
    cfg.FACE.KD.TEACHER_INPUT = "hr"
    # lambda1 * CE + lambda2 * T^2 KL + lambda3 * feature loss; the paper gives no values.
    cfg.FACE.KD.HARD_WEIGHT = 1.0
    cfg.FACE.KD.SOFT_WEIGHT = 1.0
    cfg.FACE.KD.FEAT_WEIGHT = 1.0
    cfg.FACE.KD.TEMPERATURE = 4.0
    # A key of kd_det.losses.FEATURE_LOSSES: "mmd" (MK-MMD, the paper) or "l2"
    # (normalised-feature L2, the classic alternative).
    cfg.FACE.KD.FEATURE_LOSS = "mmd"
    # Every this many iterations, log under kd_diag/ each term's gradient norm on the
    # student, its ratio and cosine to the CE gradient, and the teacher's accuracy on its
    # own input and on the student's (0: off; costs one backward per term).
    cfg.FACE.KD.DIAGNOSTICS_PERIOD = 0
    cfg.FACE.TEST = CfgNode()
    # Probe resolutions (shorter side, pixels; 0 = original): held-out faces are downscaled
    # to each and resized back, then matched against the original-resolution training faces.
    cfg.FACE.TEST.PROBE_SIZES = (0, 30, 20, 16, 12, 8)
    # Rank-1 on the validation faces every this many iterations and at the end, into
    # OUTPUT_DIR/curve.json (the learning curve; 0: at the end only, in the results).
    cfg.FACE.TEST.VAL_PERIOD = 0
    return cfg


def check_face_config(cfg: CfgNode) -> None:
    """Refuse bad keys before any data is read or any step is taken."""
    f = cfg.FACE
    if f.METHOD not in METHODS:
        raise ValueError(f"FACE.METHOD={f.METHOD!r}: use one of {METHODS}")
    if f.NUM_IDENTITIES < 2:
        raise ValueError(f"FACE.NUM_IDENTITIES={f.NUM_IDENTITIES} must be >= 2")
    if not os.path.isfile(f.DATA.PATH):
        raise FileNotFoundError(
            f"FACE.DATA.PATH={f.DATA.PATH!r} does not exist: give the path of "
            "olivettifaces.mat (the Olivetti faces, MATLAB v5, key 'faces'), e.g. "
            "FACE.DATA.PATH ../shared/data/olivetti/olivettifaces.mat")
    check_network_config("FACE.MODEL", f.MODEL)
    check_network_config("FACE.TEACHER", f.TEACHER)
    if f.EMBED_DIM < 1:
        raise ValueError(f"FACE.EMBED_DIM={f.EMBED_DIM} must be >= 1")
    if f.LR.ENABLED:  # LRDegradation checks the values
        LRDegradation(f.LR.PROB, f.LR.SIZES, f.LR.BLUR_PROB, f.LR.BLUR_SIGMA)
    if any(s < 0 for s in f.TEST.PROBE_SIZES) or not f.TEST.PROBE_SIZES:
        raise ValueError(f"FACE.TEST.PROBE_SIZES={tuple(f.TEST.PROBE_SIZES)}: give sizes in "
                         "pixels, 0 for the original resolution")
    if f.TEST.VAL_PERIOD < 0 or f.KD.DIAGNOSTICS_PERIOD < 0:
        raise ValueError(f"FACE.TEST.VAL_PERIOD={f.TEST.VAL_PERIOD} and "
                         f"FACE.KD.DIAGNOSTICS_PERIOD={f.KD.DIAGNOSTICS_PERIOD} must be >= 0")
    if f.TEST.VAL_PERIOD and not f.DATA.VAL_PER_IDENTITY:
        raise ValueError("FACE.TEST.VAL_PERIOD needs validation faces: set "
                         "FACE.DATA.VAL_PER_IDENTITY >= 1")
    if f.METHOD == "none" and f.TEACHER.WEIGHTS:
        raise ValueError("FACE.TEACHER.WEIGHTS is set but FACE.METHOD is 'none' (no teacher): "
                         "use FACE.METHOD kd or clear the key")
    if f.METHOD == "kd":
        if not f.TEACHER.WEIGHTS:
            raise ValueError("FACE.METHOD='kd' needs FACE.TEACHER.WEIGHTS: train the teacher "
                             "first (configs/face/teacher.yaml) and give its model_final.pth")
        if not os.path.isfile(f.TEACHER.WEIGHTS):
            raise FileNotFoundError(
                f"FACE.TEACHER.WEIGHTS={f.TEACHER.WEIGHTS!r} does not exist: train the teacher "
                "first (configs/face/teacher.yaml) and give its model_final.pth")
        if f.KD.TEACHER_INPUT not in TEACHER_INPUTS:
            raise ValueError(f"FACE.KD.TEACHER_INPUT={f.KD.TEACHER_INPUT!r}: use one of "
                             f"{TEACHER_INPUTS}")
        if f.KD.FEATURE_LOSS not in FEATURE_LOSSES:
            raise ValueError(f"FACE.KD.FEATURE_LOSS={f.KD.FEATURE_LOSS!r}: use one of "
                             f"{tuple(FEATURE_LOSSES)}")
        if f.KD.TEMPERATURE <= 0:
            raise ValueError(f"FACE.KD.TEMPERATURE={f.KD.TEMPERATURE} must be > 0")
