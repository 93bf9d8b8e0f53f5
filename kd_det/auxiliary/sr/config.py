"""Config keys of the super-resolution trainer, on top of the shared auxiliary config."""
import glob
import os
from typing import List, Tuple

from detectron2.config import CfgNode

from .modes import SR_MODE_REGISTRY

__all__ = ["add_sr_config", "check_sr_config", "list_images", "train_val_files"]

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
    # Global bicubic skips (no parameter): FSRCNN adds its output to the bicubic upscaling
    # of its input, the PISR teacher's encoder to the bicubic downscaling of the HR image.
    # Every network then starts at bicubic quality and learns what bicubic misses.
    cfg.SR.RESIDUAL = False
    cfg.SR.DATA = CfgNode()
    cfg.SR.DATA.TRAIN_DIR = os.path.join(_DATA_ROOT, "CSun_Hays80")
    cfg.SR.DATA.TEST_DIRS = (os.path.join(_DATA_ROOT, "CSet5"), os.path.join(_DATA_ROOT, "CSet14"))
    # Names of the test sets in results; empty = folder names with a leading "C" dropped.
    cfg.SR.DATA.TEST_NAMES = ()
    # HR patch side (pixels); must be a multiple of SR.SCALE.
    cfg.SR.DATA.PATCH_SIZE = 192
    # Patches drawn from each training image per pass over the data set.
    cfg.SR.DATA.PATCHES_PER_IMAGE = 100
    # Validation split carved from TRAIN_DIR: every VAL_EVERY-th image of its sorted list
    # (the first, then every n-th; fixed, seed-independent) is held out of training.
    # 0: no validation split.
    cfg.SR.DATA.VAL_EVERY = 8
    # Side (HR px, a multiple of SR.SCALE) of the centred square of each validation image
    # that is evaluated (a bounded cost during training); 0, or larger than an image: the
    # image's largest centred square whose side is a multiple of SR.SCALE.
    cfg.SR.DATA.VAL_CROP = 288
    # Validation PSNR (and each loss with its gradient norm on the SR network, on the
    # validation crops) every VAL_PERIOD iterations, before the first and after the last:
    # the learning curve (OUTPUT_DIR/val_curve.json). 0: only at the end. No curve
    # without a validation split.
    cfg.SR.VAL_PERIOD = 0
    cfg.SR.FSRCNN = CfgNode()
    cfg.SR.FSRCNN.D = 56
    cfg.SR.FSRCNN.S = 12
    cfg.SR.FSRCNN.M = 4
    cfg.SR.TEACHER = CfgNode()
    # Channels of the teacher encoder's hidden layers, whose kernels and strides follow
    # PISR (Lee et al., ECCV 2020). Its official code (cvlab-yonsei/PISR) makes them 56, 56
    # and 12 wide; 16 for all three is our CPU choice, a teacher step about twice as costly
    # as an FSRCNN step.
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


def train_val_files(cfg: CfgNode) -> Tuple[List[str], List[str]]:
    """The training images of SR.DATA.TRAIN_DIR and the validation images carved from
    them (SR.DATA.VAL_EVERY), both sorted; every image is in exactly one."""
    files = list_images(cfg.SR.DATA.TRAIN_DIR, "SR.DATA.TRAIN_DIR")
    every = cfg.SR.DATA.VAL_EVERY
    val = files[::every] if every else []
    train = [f for f in files if f not in val]
    if not train:
        raise ValueError(f"SR.DATA.VAL_EVERY={every} leaves no training image in "
                         f"SR.DATA.TRAIN_DIR ({len(files)} images)")
    return train, val


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
    if sr.DATA.VAL_EVERY < 0 or sr.DATA.VAL_EVERY == 1:
        raise ValueError(f"SR.DATA.VAL_EVERY={sr.DATA.VAL_EVERY}: use 0 (no validation split) "
                         "or n >= 2 (every n-th training image held out)")
    if sr.DATA.VAL_CROP < 0 or sr.DATA.VAL_CROP % sr.SCALE:
        raise ValueError(f"SR.DATA.VAL_CROP={sr.DATA.VAL_CROP} must be 0 or a positive "
                         f"multiple of SR.SCALE={sr.SCALE}")
    if sr.VAL_PERIOD < 0:
        raise ValueError(f"SR.VAL_PERIOD={sr.VAL_PERIOD} must be >= 0 (0: only at the end)")
    if sr.DATA.TEST_NAMES and len(sr.DATA.TEST_NAMES) != len(sr.DATA.TEST_DIRS):
        raise ValueError(
            f"SR.DATA.TEST_NAMES has {len(sr.DATA.TEST_NAMES)} names for "
            f"{len(sr.DATA.TEST_DIRS)} SR.DATA.TEST_DIRS: give one per folder, or none")
    train_val_files(cfg)
    for d in sr.DATA.TEST_DIRS:
        list_images(d, "SR.DATA.TEST_DIRS")
    if sr.KD.VID_FORM not in VID_FORMS:
        raise ValueError(f"SR.KD.VID_FORM={sr.KD.VID_FORM!r}: use one of {VID_FORMS}")
    if sr.MODE == "student" and not sr.KD.TEACHER_WEIGHTS:
        raise ValueError(
            "SR.MODE='student' needs SR.KD.TEACHER_WEIGHTS: train the teacher first "
            "(SR.MODE teacher) and give its model_final.pth")
