"""PISR / VID losses against hand-written formulas on small tensors."""
import math

import pytest
import torch

from kd_det.losses import (
    gaussian_variance_logit,
    pisr_teacher_loss,
    vid_gaussian_loss,
    vid_laplace_loss,
)


def test_vid_laplace_matches_formula_element_by_element():
    mu = torch.tensor([[[[0.5]], [[-1.0]]]])        # (1, 2, 1, 1)
    logit = torch.tensor([[[[0.0]], [[2.0]]]])
    t = torch.tensor([[[[1.5]], [[-1.0]]]])
    terms = []
    for m, z, y in [(0.5, 0.0, 1.5), (-1.0, 2.0, -1.0)]:
        b = 0.1 * math.log(1 + math.exp(z)) + 1e-8
        terms.append(math.log(2 * b) + abs(m - y) / b)
    expected = sum(terms) / 2
    assert vid_laplace_loss(mu, logit, t).item() == pytest.approx(expected, rel=1e-6)


def test_vid_laplace_gradient_reaches_mean_and_scale_not_target():
    mu = torch.randn(2, 3, 4, 4, requires_grad=True)
    logit = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, requires_grad=True)
    vid_laplace_loss(mu, logit, t).backward()
    assert mu.grad.abs().sum() > 0 and logit.grad.abs().sum() > 0
    assert t.grad is None


def test_vid_gaussian_uses_one_variance_per_channel():
    mu = torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]]]])    # (1, 2, 1, 2)
    t = torch.tensor([[[[0.0, 0.0]], [[3.0, -1.0]]]])
    alpha = torch.tensor([0.0, 1.0])
    var = [math.log(2.0) + 1e-5, math.log(1 + math.e) + 1e-5]
    terms = [0.5 * ((m - y) ** 2 / var[c] + math.log(var[c]))
             for c, pairs in enumerate([[(1.0, 0.0), (2.0, 0.0)], [(0.0, 3.0), (0.0, -1.0)]])
             for m, y in pairs]
    assert vid_gaussian_loss(mu, alpha, t).item() == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_vid_gaussian_initial_variance_is_five():
    alpha = torch.tensor([gaussian_variance_logit(5.0)])
    assert (torch.nn.functional.softplus(alpha) + 1e-5).item() == pytest.approx(5.0, rel=1e-6)


def test_vid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="VID mean vs teacher feature"):
        vid_laplace_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="one value per channel"):
        vid_gaussian_loss(torch.zeros(1, 2, 3, 3), torch.zeros(3), torch.zeros(1, 2, 3, 3))


def test_pisr_teacher_loss_is_l1_plus_weighted_imitation():
    sr, hr = torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[[0.5, 0.5]]]])
    enc, lr = torch.tensor([[[[2.0]]]]), torch.tensor([[[[0.0]]]])
    out = pisr_teacher_loss(sr, hr, enc, lr, imitation_weight=1e-4)
    assert out["loss_rec"].item() == pytest.approx(0.5)
    assert out["loss_imitation"].item() == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="divisible by the scale"):
        pisr_teacher_loss(sr, hr, torch.zeros(1, 1, 2, 2), lr)
