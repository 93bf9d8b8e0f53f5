"""Detection losses against hand-computed values."""
import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from kd_det.losses import (
    binary_soft_cross_entropy,
    bounded_l2_loss,
    class_weights,
    feature_imitation_loss,
    hint_l2_loss,
    hinton_kd_loss,
    linear_pkd_loss,
    soft_cross_entropy,
    standardize_channels,
    teacher_l2_loss,
)


def _softmax(xs, T=1.0):
    e = [math.exp(x / T) for x in xs]
    return [v / sum(e) for v in e]


def test_soft_ce_hand_computed_with_background_last_weight():
    zs, zt = [1.0, 2.0, 0.5], [0.2, 3.0, 1.0]
    T = 2.0
    ps, pt = _softmax(zs, T), _softmax(zt, T)
    w = [1.0, 1.0, 1.5]  # Detectron2: background is the LAST column
    expected = -sum(wc * a * math.log(b) for wc, a, b in zip(w, pt, ps))
    got = soft_cross_entropy(torch.tensor([zs]), torch.tensor([zt]), T,
                             weight=class_weights(3, bg_index=-1, bg_weight=1.5))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # The weight really lands on the background column only.
    unweighted = -sum(a * math.log(b) for a, b in zip(pt, ps))
    assert got.item() - unweighted == pytest.approx(-0.5 * pt[2] * math.log(ps[2]), rel=1e-6)


def test_soft_ce_temperature_changes_value():
    zs, zt = torch.tensor([[1.0, -1.0]]), torch.tensor([[2.0, 0.0]])
    assert soft_cross_entropy(zs, zt, 1.0).item() != pytest.approx(
        soft_cross_entropy(zs, zt, 3.0).item())


def test_binary_soft_ce_equals_two_class_softmax_form():
    xs, xt = torch.tensor([0.3, -2.0, 1.5]), torch.tensor([1.0, 0.5, -0.7])
    got = binary_soft_cross_entropy(xs, xt, temperature=1.0, bg_weight=1.5, reduction="none")
    two_s = torch.stack([xs, torch.zeros_like(xs)], -1)  # sigmoid(x) == softmax([x, 0])[0]
    two_t = torch.stack([xt, torch.zeros_like(xt)], -1)
    ref = soft_cross_entropy(two_s, two_t, weight=torch.tensor([1.0, 1.5]), reduction="none")
    torch.testing.assert_close(got, ref)
    p_t, p_s = torch.sigmoid(xt[0]), torch.sigmoid(xs[0])
    hand = -(p_t * torch.log(p_s) + 1.5 * (1 - p_t) * torch.log(1 - p_s))
    assert got[0].item() == pytest.approx(hand.item(), rel=1e-6)


def test_hinton_kd_is_t2_kl_and_gradient():
    zs = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]], requires_grad=True)
    zt = torch.tensor([[0.2, 3.0, 1.0], [1.0, 1.0, -2.0]])
    T = 4.0
    loss = hinton_kd_loss(zs, zt, T)
    ps, pt = torch.softmax(zs / T, -1), torch.softmax(zt / T, -1)
    kl = (pt * (pt.log() - ps.log())).sum(-1).mean()
    assert loss.item() == pytest.approx((T * T * kl).item(), rel=1e-5)
    loss.backward()
    torch.testing.assert_close(zs.grad, T * (ps - pt).detach() / 2, rtol=1e-5, atol=1e-6)


def test_bounded_l2_branch_is_strict_greater():
    target = torch.zeros(4, 2)
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # err 1,1,1,0
    teacher = torch.tensor([[0.0, 1.0], [1.2, 0.0], [1.1, 0.0], [0.5, 0.0]])  # err 1,1.44,1.21,.25
    m = 0.21
    per_box = bounded_l2_loss(student, teacher, target, margin=m, reduction="none")
    # box0: 1+.21 > 1 -> 1 ; box1: 1.21 > 1.44? no -> 0 ; box2: 1.21 > 1.21? no (strict) -> 0
    # box3: 0+.21 > .25? no -> 0
    torch.testing.assert_close(per_box, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert bounded_l2_loss(student, teacher, target, margin=m).item() == pytest.approx(0.25)


def test_teacher_l2_and_hint():
    s, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    assert teacher_l2_loss(s, t).item() == pytest.approx(5.0)
    a, z = torch.ones(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    assert hint_l2_loss(a, z).item() == pytest.approx(1.0)
    assert hint_l2_loss(a, z, normalize="batch").item() == pytest.approx(12.0)
    with pytest.raises(ValueError, match="same shape"):
        hint_l2_loss(a, torch.zeros(2, 3, 1, 1))


def test_losses_give_no_gradient_to_teacher():
    zs = torch.randn(3, 4, requires_grad=True)
    zt = torch.randn(3, 4, requires_grad=True)
    soft_cross_entropy(zs, zt).backward()
    assert zs.grad is not None and zt.grad is None


def test_pkd_from_moments_equals_the_standardised_maps():
    """The PKD hint from channel moments (no standardised or adapted map) equals
    0.5 * MSE of the two standardised maps, in value and in every gradient; the adapter's
    bias cancels in the standardisation."""
    from kd_det.modeling.adapters import HintAdapters

    g = torch.Generator().manual_seed(0)
    v = (torch.randn(2, 6, 5, 7, generator=g) * 3 + 2).requires_grad_()
    t = torch.randn(2, 10, 5, 7, generator=g) * 2 + 5
    conv = torch.nn.Conv2d(6, 10, 1)

    def reference(x):
        return 0.5 * torch.nn.functional.mse_loss(standardize_channels(x),
                                                  standardize_channels(t))

    for got, ref in ((feature_imitation_loss(conv(v), t, "pkd"), reference(conv(v))),
                     (linear_pkd_loss(conv.weight, v, t), reference(conv(v)))):
        params = [v, conv.weight]
        assert torch.allclose(got, ref, rtol=1e-5)
        for a, b in zip(torch.autograd.grad(got, params), torch.autograd.grad(ref, params)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    shapes = {"p": ShapeSpec(channels=6, stride=4)}
    adapters = HintAdapters([("p", "p")], shapes, {"p": ShapeSpec(channels=10, stride=4)})
    adapters.adapters["p_to_p"].load_state_dict(conv.state_dict())
    loss = adapters({"p": v}, {"p": t}, "pkd")["p_to_p"]
    assert torch.allclose(loss, reference(conv(v)), rtol=1e-5)
    loss.backward()
    assert torch.equal(adapters.adapters["p_to_p"].bias.grad, torch.zeros(10))
