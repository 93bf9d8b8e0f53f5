"""DistillRCNN under autocast (bfloat16 on CPU stands in for Detectron2's AMPTrainer on a
GPU), fp32 adapters whatever the features' dtype (mmrazor#190), a teacher that records no
autograd state, and KD terms that add no host-device synchronisation."""
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.utils._python_dispatch import TorchDispatchMode

from kd_det.modeling.adapters import HintAdapters

from ..detection_utils import fixed_batch, kd_cfg

KD_TERMS = ("loss_rpn_kd_cls", "loss_rpn_kd_reg", "loss_roi_kd_cls", "loss_roi_kd_reg",
            "loss_hint")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = kd_cfg(tmp_path_factory.mktemp("teacher"))
    cfg.KD.RPN.MARGIN = cfg.KD.ROI.MARGIN = 1e3  # keep the bounded terms on (untrained teacher)
    torch.manual_seed(0)
    return build_model(cfg).train()


def test_bf16_autocast_step_is_finite_and_reaches_the_student(model):
    model.zero_grad(set_to_none=True)
    with EventStorage(), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(fixed_batch())
    for k in KD_TERMS:
        assert k in losses and torch.isfinite(losses[k]), k
    sum(losses.values()).backward()
    for name in ("backbone", "proposal_generator", "roi_heads"):
        grads = [p.grad for p in getattr(model.student, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
        assert all(torch.isfinite(g).all() for g in grads if g is not None), name
    for p in model.adapters.parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_adapters_keep_fp32_weights_and_return_the_students_dtype(dtype):
    shapes = {"p2": ShapeSpec(channels=8, stride=4)}
    adapters = HintAdapters([("p2", "p2")], shapes, {"p2": ShapeSpec(channels=16, stride=4)})
    v = torch.randn(2, 8, 6, 6, dtype=dtype, requires_grad=True)
    z = torch.randn(2, 16, 6, 6, dtype=dtype)
    conv = adapters.adapters["p2_to_p2"]
    assert HintAdapters._adapt(conv, v).dtype == dtype  # no autocast: no mixed-dtype error
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert HintAdapters._adapt(conv, v).dtype == dtype
        loss = adapters({"p2": v}, {"p2": z})["p2_to_p2"]
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert conv.weight.dtype == torch.float32 and conv.weight.grad.dtype == torch.float32
    assert v.grad is not None and v.grad.dtype == dtype


def _capture_kd_inputs(model):
    """The arguments of one kd_losses call during a training step."""
    captured = {}
    kd_losses = model.kd_losses

    def spy(*args):
        captured["args"] = args
        return kd_losses(*args)

    model.kd_losses = spy
    try:
        with EventStorage():
            model(fixed_batch())
    finally:
        del model.kd_losses
    return captured["args"]


def test_teacher_records_no_autograd_state(model):
    teacher = _capture_kd_inputs(model)[0].t
    outputs = list(teacher.features.values()) + teacher.rpn_logits + teacher.rpn_deltas + [
        teacher.box_scores, teacher.box_deltas]
    assert all(not x.requires_grad and x.grad_fn is None for x in outputs)


class _SyncOps(TorchDispatchMode):
    """Records the ops that make a CUDA host wait for the device: reading a value
    (.item(), float(t), bool(t)) and shapes that depend on values (nonzero, boolean
    indexing, masked_select, unique)."""

    VALUE_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        indices = args[1] if name in ("index", "index_put", "index_put_") else ()
        if name in self.VALUE_OPS or any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def test_kd_terms_add_no_host_device_sync(model):
    args = _capture_kd_inputs(model)
    with _SyncOps() as mode:
        losses = model.kd_losses(*args)
        sum(losses[k] for k in KD_TERMS).backward()
    assert set(KD_TERMS) <= set(losses)
    assert mode.seen == []


def test_an_image_without_ground_truth_keeps_every_kd_term_finite(model):
    batch = fixed_batch()
    empty = batch[1]["instances"]
    batch[1]["instances"] = empty[empty.gt_classes < 0]
    with EventStorage():
        losses = model(batch)
    for k in KD_TERMS:
        assert torch.isfinite(losses[k]), k


def test_encode_deltas_matches_detectron2_get_deltas():
    from detectron2.modeling.box_regression import Box2BoxTransform

    from kd_det.modeling.kd_terms import encode_deltas

    g = torch.Generator().manual_seed(0)

    def boxes(*lead):
        xy = torch.rand(*lead, 2, generator=g) * 50
        return torch.cat([xy, xy + 1 + torch.rand(*lead, 2, generator=g) * 30], -1)

    b2b = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    src, dst = boxes(7), boxes(3, 7)  # anchors broadcast over 3 images
    expected = torch.stack([b2b.get_deltas(src, d) for d in dst])
    torch.testing.assert_close(encode_deltas(b2b, src, dst), expected)
