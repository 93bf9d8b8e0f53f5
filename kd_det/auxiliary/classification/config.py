"""Config keys of the classification-distillation trainer, on top of the auxiliary config."""
from detectron2.config import CfgNode

from .data import find_idx
from .methods import build_cls_method

__all__ = ["ARCHS", "add_cls_kd_config", "check_cls_config", "network_config",
           "check_network_config"]

ARCHS = ("cnn", "resnet")


def network_config(arch: str, widths) -> CfgNode:
    """The keys of a ClassifierNet (the classifiers here, the face trunks): ARCH ("cnn": one
    conv per stage; "resnet": a stem and one basic block per stage) and WIDTHS (channels
    of each stage; every stage after the first halves the resolution)."""
    node = CfgNode()
    node.ARCH = arch
    node.WIDTHS = tuple(widths)
    return node


def check_network_config(key: str, node: CfgNode) -> None:
    if node.ARCH not in ARCHS:
        raise ValueError(f"{key}.ARCH={node.ARCH!r}: use one of {ARCHS}")
    if not node.WIDTHS or any(w < 1 for w in node.WIDTHS):
        raise ValueError(f"{key}.WIDTHS={tuple(node.WIDTHS)}: give positive channel counts")


def add_cls_kd_config(cfg: CfgNode) -> CfgNode:
    """Add the CLS.* keys (method, data, the trained network, teachers, per-method weights)
    to an auxiliary config (get_aux_cfg), with Fashion-MNIST's batch and warm-up."""
    cfg.OUTPUT_DIR = "./output/cls"
    cfg.DATALOADER.BATCH_SIZE = 128
    cfg.SOLVER.WARMUP_ITERS = 50
    cfg.CLS = CfgNode()
    # A method of classification.methods.CLS_METHOD_REGISTRY: "none" trains CLS.MODEL alone
    # with CE (student baseline, or a teacher to distil from); "kd" Hinton; "fitnets" hint
    # stage then KD; "fnkd" feature-normalised KD; "meal_v2".
    cfg.CLS.METHOD = "none"
    cfg.CLS.NUM_CLASSES = 10
    cfg.CLS.DATA = CfgNode()
    # Folder of the Fashion-MNIST IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).
    cfg.CLS.DATA.ROOT = "/usr/share/datasets/fashion-mnist"
    # Validation images held out of the 60k training images (fixed by SPLIT_SEED).
    cfg.CLS.DATA.VAL_SIZE = 5000
    # Training images drawn from the rest; 0 = all of them.
    cfg.CLS.DATA.TRAIN_SIZE = 0
    # Official test images evaluated (the first N); 0 = all 10,000.
    cfg.CLS.DATA.TEST_SIZE = 0
    cfg.CLS.DATA.SPLIT_SEED = 0
    # Every N iterations, metrics.json gets the student's val top-1 ("val/top1": the
    # learning curve) and each loss term's gradient norm on the student for that training
    # batch ("grad_norm/<term>"); neither changes training. 0: off.
    cfg.CLS.CURVE_PERIOD = 0
    # The network this run trains: the student, or the teacher itself when METHOD is "none".
    cfg.CLS.MODEL = network_config("cnn", (16, 32, 64))
    cfg.CLS.TEACHER = network_config("resnet", (16, 32, 64))
    # model_final.pth of METHOD "none" runs of the teacher network; one for kd, fitnets and
    # fnkd, two or more for meal_v2.
    cfg.CLS.TEACHER.WEIGHTS = ()
    # Hinton KD (also FitNets stage 2): alpha_hard * CE + alpha_soft * T^2 * KL.
    cfg.CLS.KD = CfgNode()
    cfg.CLS.KD.TEMPERATURE = 4.0
    cfg.CLS.KD.ALPHA_HARD = 0.1
    cfg.CLS.KD.ALPHA_SOFT = 0.9
    cfg.CLS.FITNETS = CfgNode()
    # Iterations of stage 1 (hint loss only, student up to the guided stage + regressor);
    # the remaining SOLVER.MAX_ITER - STAGE1_ITERS train the whole student with CLS.KD.
    cfg.CLS.FITNETS.STAGE1_ITERS = 200
    # Index of the student stage (guided layer) and of the teacher stage (hint layer).
    cfg.CLS.FITNETS.GUIDED_STAGE = 1
    cfg.CLS.FITNETS.HINT_STAGE = 1
    cfg.CLS.FITNETS.HINT_WEIGHT = 1.0
    # "mean" over all elements (RepDistiller) or "batch" (sum per sample, mean over the
    # batch: the official code's reduction, whose extra factor 0.5 HINT_WEIGHT 0.5 gives).
    cfg.CLS.FITNETS.HINT_NORMALIZE = "mean"
    cfg.CLS.FNKD = CfgNode()
    # "official" (aztc/FNKD: clip feature norms to TAU, keep the bias) or "paper".
    cfg.CLS.FNKD.FORM = "official"
    cfg.CLS.FNKD.TAU = 2.0
    # w of the official code (CIFAR-100: 9); lambda^2 in the paper form.
    cfg.CLS.FNKD.WEIGHT = 9.0
    cfg.CLS.MEAL = CfgNode()
    # Hidden widths of the discriminator MLP; () = the official C/8, C/64 (needs C >= 64).
    cfg.CLS.MEAL.DISC_HIDDEN = ()
    cfg.CLS.MEAL.DISC_LR = 1e-4
    cfg.CLS.MEAL.DISC_WEIGHT = 1.0
    return cfg


def check_cls_config(cfg: CfgNode) -> None:
    """Refuse bad keys before any data is read or any step is taken."""
    c = cfg.CLS
    build_cls_method(cfg)  # the method, its number of teachers and its own keys
    if c.NUM_CLASSES < 2:
        raise ValueError(f"CLS.NUM_CLASSES={c.NUM_CLASSES} must be >= 2")
    check_network_config("CLS.MODEL", c.MODEL)
    check_network_config("CLS.TEACHER", c.TEACHER)
    if c.DATA.VAL_SIZE < 0 or c.DATA.TRAIN_SIZE < 0 or c.DATA.TEST_SIZE < 0:
        raise ValueError("CLS.DATA.VAL_SIZE, TRAIN_SIZE and TEST_SIZE must be >= 0")
    if c.CURVE_PERIOD < 0:
        raise ValueError(f"CLS.CURVE_PERIOD={c.CURVE_PERIOD} must be >= 0")
    if c.CURVE_PERIOD and not c.DATA.VAL_SIZE:
        raise ValueError("CLS.CURVE_PERIOD logs val top-1 but CLS.DATA.VAL_SIZE is 0: hold "
                         "out a validation split or set CLS.CURVE_PERIOD 0")
    if c.DATA.VAL_SIZE + c.DATA.TRAIN_SIZE > 60000:
        raise ValueError(
            f"CLS.DATA.VAL_SIZE + CLS.DATA.TRAIN_SIZE = {c.DATA.VAL_SIZE + c.DATA.TRAIN_SIZE} "
            "exceeds the 60,000 Fashion-MNIST training images")
    for split in ("train", "test"):
        for kind in ("images-idx3", "labels-idx1"):
            find_idx(c.DATA.ROOT, split, kind)
