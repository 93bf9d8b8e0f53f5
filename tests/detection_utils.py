"""Tiny real Detectron2 Faster R-CNN configs, teachers on disk and batches for tests."""
import os

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from kd_det import add_efficientnet_config, add_kd_config, add_mobilenet_config
from kd_det.modeling.kd_terms import build_kd_terms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_tool(name):
    """tools/<name>.py as a module (the tools are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_yaml_cfg(path, *opts):
    """A shipped detection config (path relative to the repository), as tools read it."""
    cfg = get_cfg()
    add_kd_config(cfg)
    add_mobilenet_config(cfg)
    add_efficientnet_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, path), allow_unsafe=False)
    cfg.merge_from_list(list(opts))
    return cfg


def tiny_rcnn_cfg(fpn_channels=32, num_classes=3, depth=18, fc_dim=64):
    """A small but complete R-18-FPN Faster R-CNN (BN, random init) for 64-128 px images."""
    cfg = get_cfg()
    add_kd_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "Base-RCNN-FPN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.FPN.OUT_CHANNELS = fpn_channels
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = fc_dim
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 400
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    return cfg


def write_teacher(tmp_path, num_classes=3, anchor_sizes=None, fpn_channels=64, seed=0):
    """Save a teacher config + weights (random init: tests check mechanics, not accuracy)."""
    tcfg = tiny_rcnn_cfg(fpn_channels=fpn_channels, num_classes=num_classes, fc_dim=96)
    if anchor_sizes is not None:
        tcfg.MODEL.ANCHOR_GENERATOR.SIZES = anchor_sizes
    torch.manual_seed(seed)
    teacher = build_model(tcfg)
    _calibrate_bn(teacher)
    cfg_path = os.path.join(tmp_path, f"teacher_{num_classes}_{seed}.yaml")
    w_path = os.path.join(tmp_path, f"teacher_{num_classes}_{seed}.pth")
    with open(cfg_path, "w") as f:
        f.write(tcfg.dump())
    torch.save({"model": teacher.state_dict()}, w_path)
    return cfg_path, w_path


@torch.no_grad()
def _calibrate_bn(model):
    """Give a random-init model the BatchNorm statistics of real inputs, as a trained
    teacher has; otherwise its eval-mode features explode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for seed in range(4):
        model.backbone(model.preprocess_image(fixed_batch(seed=seed)).tensor)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def active_terms(cfg):
    """Loss names of the KD terms `cfg` turns on (kd_terms.build_kd_terms decides)."""
    return [t.loss_name for t in build_kd_terms(cfg)]


def kd_cfg(tmp_path, **teacher_kwargs):
    cfg = tiny_rcnn_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
    cfg.KD.TEACHER.CONFIG_FILE, cfg.KD.TEACHER.WEIGHTS = write_teacher(tmp_path, **teacher_kwargs)
    return cfg


def short_run(cfg, train, test, size=96, max_size=None, ims_per_batch=2, iters=4):
    """Shrink `cfg` to a few CPU iterations on `train`, evaluated on `test`."""
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = tuple(train), tuple(test)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST = (size,), size
    cfg.INPUT.MAX_SIZE_TRAIN = cfg.INPUT.MAX_SIZE_TEST = max_size or size
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = ims_per_batch
    cfg.SOLVER.BASE_LR = 0.005
    cfg.SOLVER.MAX_ITER = iters
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.TEST.EVAL_PERIOD = 0
    return cfg


def fixed_batch(n=2, size=96, seed=0):
    """Images with a few boxes each, in Detectron2's dataset-mapper output format."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        img = torch.randint(0, 255, (3, size, size), generator=g).float()
        boxes = torch.tensor([[8.0, 10.0, 40.0, 50.0], [50.0, 40.0, 90.0, 80.0]])
        for (x0, y0, x1, y1), c in zip(boxes.int().tolist(), (40.0, 220.0)):
            img[:, y0:y1, x0:x1] = c
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.tensor([0, 2])
        batch.append({"image": img, "instances": inst, "height": size, "width": size})
    return batch


def make_coco_dataset(root, name, n_images=6, size=96, seed=0):
    """A tiny COCO-json dataset of bright rectangles on noise, registered as `name`."""
    import json

    import cv2
    import numpy as np
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        img = rng.randint(0, 80, (size, size, 3)).astype(np.uint8)
        for j in range(2):
            w, h = rng.randint(16, 40, 2)
            x, y = rng.randint(0, size - w), rng.randint(0, size - h)
            c = int(rng.randint(0, 3))
            img[y:y + h, x:x + w] = (80 + 60 * c, 255 - 60 * c, 120)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [int(x), int(y), int(w), int(h)], "area": int(w * h),
                         "iscrowd": 0})
        fname = f"{i:03d}.png"
        cv2.imwrite(os.path.join(root, fname), img)
        images.append({"id": i + 1, "file_name": fname, "height": size, "width": size})
    cats = [{"id": k + 1, "name": f"c{k}"} for k in range(3)]
    path = os.path.join(root, "ann.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        from detectron2.data import MetadataCatalog
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, path, root)
    return path


def assert_task_losses_match_plain(model, batch, mu_rpn, mu_roi):
    """`model` (a DistillRCNN in training mode) gives the task losses of a plain
    GeneralizedRCNN with its student's weights on the batch its student sees, same seed
    (the classification losses divided by mu)."""
    from detectron2.utils.events import EventStorage

    plain = build_model(tiny_rcnn_cfg()).train()
    plain.load_state_dict(model.student.state_dict())
    with EventStorage():
        torch.manual_seed(3)
        ours = model(batch)
        torch.manual_seed(3)
        ref = plain(model.student_inputs(batch))
    torch.testing.assert_close(ours["loss_rpn_cls"] / mu_rpn, ref["loss_rpn_cls"])
    torch.testing.assert_close(ours["loss_cls"] / mu_roi, ref["loss_cls"])
    torch.testing.assert_close(ours["loss_rpn_loc"], ref["loss_rpn_loc"])
    torch.testing.assert_close(ours["loss_box_reg"], ref["loss_box_reg"])
