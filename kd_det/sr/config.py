"""Config keys of the super-resolution trainer, on top of the shared auxiliary config."""
import glob
import os

from detectron2.config import CfgNode

from .modes import SR_MODE_REGISTRY

__all__ = ["add_sr_config", "check_sr_config", "list_images"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VID_FORMS = ("laplace", "gaussian")
_DATA_ROOT = os.path.join("..", "shared", "data", "sr")


def add_sr_config(cfg: CfgNode) -> CfgNode:
    """Add the SR.* keys (mode, scale, data, model sizes, distillation weights) to an
    auxiliary config (get_aux_cfg), with PISR's optimiser: Adam 1e-3, cosine to 1e-5."""
    cfg.DATALOADER.BATCH_SIZE = 16
    cfg.SOLVER.OPTIMIZER = "ADAM"
    cfg.SOLVER.BASE_LR = 1e-3
    cfg.SOLVER.BASE_LR_END = 1e-5
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    cfg.SR = CfgNode()
    # A mode of sr.modes.SR_MODE_REGISTRY: "baseline": plain FSRCNN (L1); "teacher": PISR
    # step 1 (encoder sees HR); "student": PISR step 2 (FSRCNN from the teacher decoder,
    # L1 + VID).
    cfg.SR.MODE = "baseline"
    cfg.SR.SCALE = 2
    cfg.SR.DATA = CfgNode()
    cfg.SR.DATA.TRAIN_DIR = os.path.join(_DATA_ROOT, "CSun_Hays80")
    cfg.SR.DATA.TEST_DIRS = (os.path.join(_DATA_ROOT, "CSet5"), os.path.join(_DATA_ROOT, "CSet14"))
    # Names of the test sets in results; empty = folder names with a leading "C" dropped.
    cfg.SR.DATA.TEST_NAMES = ()
    # HR patch side (pixels); must be a multiple of SR.SCALE.
    cfg.SR.DATA.PATCH_SIZE = 192
    # Patches drawn from each training image per pass over the data set.
    cfg.SR.DATA.PATCHES_PER_IMAGE = 100
    cfg.SR.FSRCNN = CfgNode()
    cfg.SR.FSRCNN.D = 56
    cfg.SR.FSRCNN.S = 12
    cfg.SR.FSRCNN.M = 4
    cfg.SR.TEACHER = CfgNode()
    # Channels of the teacher encoder's hidden layers (our choice: METHODS fixes only the
    # layers; 16 keeps a teacher step about twice as costly as an FSRCNN step on CPU).
    cfg.SR.TEACHER.ENCODER_WIDTH = 16
    cfg.SR.TEACHER.IMITATION_WEIGHT = 1e-4
    cfg.SR.KD = CfgNode()
    # Trained teacher checkpoint (model_final.pth of a SR.MODE=teacher run); student only.
    cfg.SR.KD.TEACHER_WEIGHTS = ""
    cfg.SR.KD.INIT_FROM_TEACHER = True
    cfg.SR.KD.VID_FORM = "laplace"
    cfg.SR.KD.VID_WEIGHT = 1e-6
    # Laplace: b = SCALE_FACTOR * softplus(.) + 1e-8; Gaussian: initial variance.
    cfg.SR.KD.VID_LAPLACE_SCALE_FACTOR = 0.1
    cfg.SR.KD.VID_GAUSSIAN_INIT_VAR = 5.0
    return cfg


def list_images(folder: str, key: str):
    """Sorted image files of `folder`; a clear error naming `key` when there are none."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{key}={folder!r} is not a folder: point it at a folder of images "
            f"(e.g. ../shared/data/sr/CSun_Hays80) or override it on the command line.")
    files = sorted(f for f in glob.glob(os.path.join(folder, "*"))
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f"{key}={folder!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def check_sr_config(cfg: CfgNode) -> None:
    """Refuse bad keys before any training step, naming the key and the fix."""
    sr = cfg.SR
    if sr.MODE not in SR_MODE_REGISTRY:
        modes = tuple(name for name, _ in SR_MODE_REGISTRY)
        raise ValueError(f"SR.MODE={sr.MODE!r}: use one of {modes}")
    if sr.SCALE not in (2, 3, 4):
        raise ValueError(f"SR.SCALE={sr.SCALE!r}: FSRCNN is built for scales 2, 3 and 4")
    if sr.DATA.PATCH_SIZE <= 0 or sr.DATA.PATCH_SIZE % sr.SCALE:
        raise ValueError(
            f"SR.DATA.PATCH_SIZE={sr.DATA.PATCH_SIZE} must be a positive multiple of "
            f"SR.SCALE={sr.SCALE} (so that the LR patch is exact)")
    if sr.DATA.PATCHES_PER_IMAGE < 1:
        raise ValueError(f"SR.DATA.PATCHES_PER_IMAGE={sr.DATA.PATCHES_PER_IMAGE} must be >= 1")
    if sr.DATA.TEST_NAMES and len(sr.DATA.TEST_NAMES) != len(sr.DATA.TEST_DIRS):
        raise ValueError(
            f"SR.DATA.TEST_NAMES has {len(sr.DATA.TEST_NAMES)} names for "
            f"{len(sr.DATA.TEST_DIRS)} SR.DATA.TEST_DIRS: give one per folder, or none")
    list_images(sr.DATA.TRAIN_DIR, "SR.DATA.TRAIN_DIR")
    for d in sr.DATA.TEST_DIRS:
        list_images(d, "SR.DATA.TEST_DIRS")
    if sr.KD.VID_FORM not in VID_FORMS:
        raise ValueError(f"SR.KD.VID_FORM={sr.KD.VID_FORM!r}: use one of {VID_FORMS}")
    if sr.MODE == "student" and not sr.KD.TEACHER_WEIGHTS:
        raise ValueError(
            "SR.MODE='student' needs SR.KD.TEACHER_WEIGHTS: train the teacher first "
            "(SR.MODE teacher) and give its model_final.pth")
