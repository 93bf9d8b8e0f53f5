"""Classification KD losses against hand-written formulas on small tensors."""
import math

import pytest
import torch
from torch import nn

from kd_det.losses import (
    ensemble_soft_cross_entropy,
    feature_normalized_logits,
    fnkd_loss,
    hinton_kd_loss,
    meal_v2_discriminator_loss,
)


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def _soft_ce(zs, zt):
    ps, pt = _softmax(zs), _softmax(zt)
    return -sum(t * math.log(s) for t, s in zip(pt, ps))


def test_hinton_kd_has_t_squared_factor():
    zs, zt, T = [1.0, -0.5, 2.0], [0.2, 1.5, -1.0], 4.0
    ps = _softmax([z / T for z in zs])
    pt = _softmax([z / T for z in zt])
    kl = sum(t * math.log(t / s) for t, s in zip(pt, ps))
    got = hinton_kd_loss(torch.tensor([zs]), torch.tensor([zt]), T).item()
    assert got == pytest.approx(T * T * kl, rel=1e-5)


def test_fnkd_official_clips_only_long_features():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([0.5, -0.5, 0.0])
    long_f = torch.tensor([[3.0, 4.0]])   # norm 5 > tau = 2 -> rescaled to (1.2, 1.6)
    short_f = torch.tensor([[0.6, 0.8]])  # norm 1 < tau -> unchanged
    z_long = feature_normalized_logits(long_f, w, b, tau=2.0, form="official")
    z_short = feature_normalized_logits(short_f, w, b, tau=2.0, form="official")
    assert torch.allclose(z_long, torch.tensor([[1.7, 2.7, 2.8]]))
    assert torch.allclose(z_short, torch.tensor([[1.1, 1.1, 1.4]]))


def test_fnkd_paper_rescales_every_norm_without_bias():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    f = torch.tensor([[0.6, 0.8], [3.0, 4.0]])  # norms 1 and 5: same direction, same logits
    z = feature_normalized_logits(f, w, torch.tensor([9.0, 9.0]), tau=3.0, form="paper")
    assert torch.allclose(z, torch.tensor([[1.8, 4.8], [1.8, 4.8]]))


def test_fnkd_loss_is_soft_ce_of_normalised_logits_and_spares_teacher():
    ws, bs = torch.tensor([[1.0, -1.0], [0.5, 0.5]], requires_grad=True), torch.zeros(2)
    wt, bt = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 1.0]]), torch.tensor([0.1, -0.1])
    fs = torch.tensor([[3.0, 4.0]], requires_grad=True)  # norm 5 -> (1.2, 1.6)
    ft = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)  # norm 1 -> unchanged
    loss = fnkd_loss(fs, ws, bs, ft, wt, bt, tau=2.0, form="official")
    expected = _soft_ce([1.2 - 1.6, 0.6 + 0.8], [0.1, 0.9])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert ft.grad is None and fs.grad is not None and ws.grad is not None
    with pytest.raises(ValueError, match="FNKD form"):
        fnkd_loss(fs, ws, bs, ft, wt, bt, form="other")


def test_meal_soft_ce_averages_teacher_probabilities_without_hard_term():
    zs = [0.3, -1.0, 2.0]
    t1, t2 = [1.0, 0.0, -1.0], [-2.0, 0.5, 3.0]
    q = [(a + b) / 2 for a, b in zip(_softmax(t1), _softmax(t2))]
    expected = -sum(qc * math.log(pc) for qc, pc in zip(q, _softmax(zs)))
    got = ensemble_soft_cross_entropy(torch.tensor([zs]), [torch.tensor([t1]), torch.tensor([t2])])
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_meal_discriminator_targets_student_10_teacher_01():
    zs = torch.tensor([[0.5, -1.0], [2.0, 0.0]], requires_grad=True)  # C = 2: scores = logits
    t1, t2 = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.tensor([[3.0, 1.0], [2.0, -2.0]])
    got = meal_v2_discriminator_loss(nn.Identity(), zs, [t1, t2])
    zt = [[2.0, 2.0], [1.0, -1.0]]  # mean of the teachers' logits

    def bce(x, y):
        # -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]
        return math.log1p(math.exp(-x)) if y else math.log1p(math.exp(x))

    rows = [(r, [1, 0]) for r in zs.tolist()] + [(r, [0, 1]) for r in zt]
    expected = sum(bce(x, y) for r, t in rows for x, y in zip(r, t)) / 8
    assert got.item() == pytest.approx(expected, rel=1e-5)
    got.backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0
