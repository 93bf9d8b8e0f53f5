# LazyConfig form of configs/builtin/student.yaml (with Base-builtin.yaml): the built-in
# dataset's MobileNetV2-FPN32 student, its data, solver and schedule.
import detectron2.data.transforms as T
import torch
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import OmegaConf

from kd_det.data import NamedErrorMapper, checked_dataset_dicts
from kd_det.engine.lazy import with_gradient_clipping

from ..common.models.faster_rcnn_mobilenetv2_fpn import model

FPN_CHANNELS, FC_DIM, MAX_ITER = 32, 256, 150

model.backbone.bottom_up.freeze_at = 4  # CPU: early depthwise stages dominate a backward
model.backbone.out_channels = FPN_CHANNELS
model.proposal_generator.head.in_channels = FPN_CHANNELS
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.batch_size_per_image = 128
model.proposal_generator.post_nms_topk = (500, 200)
model.roi_heads.num_classes = 5
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.input_shape = ShapeSpec(channels=FPN_CHANNELS, height=7, width=7)
model.roi_heads.box_head.fc_dims = [FC_DIM, FC_DIM]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=FC_DIM)
model.roi_heads.box_predictor.test_topk_per_image = 50

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(checked_dataset_dicts)(names="kd_builtin_train"),
    mapper=L(NamedErrorMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(256,), max_size=256,
                                    sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
    ),
    total_batch_size=4,
    num_workers=0,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(checked_dataset_dicts)(names="kd_builtin_val", filter_empty=False),
    mapper=L(NamedErrorMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=256, max_size=256)],
        image_format="RGB",
    ),
    num_workers=0,
)
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}")

# SGD as the yacs SOLVER, with per-parameter gradient-norm clipping at 1.0.
optimizer = L(with_gradient_clipping)(
    optimizer=L(torch.optim.SGD)(
        params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
        lr=0.02, momentum=0.9, weight_decay=1e-4,
    ),
    clip_type="norm", clip_value=1.0,
)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[120],
                                         num_updates=MAX_ITER),
    warmup_length=20 / MAX_ITER,
    warmup_method="linear",
    warmup_factor=0.001,
)
train = dict(
    output_dir="./output/builtin/student_lazy",
    init_checkpoint="",
    max_iter=MAX_ITER,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=100000, max_to_keep=100),
    eval_period=0,
    log_period=20,
    device="cpu",
    seed=0,
)
