"""PSNR / SSIM on the Y channel with the border shaved, against hand computations."""
import math

import pytest
import torch

from kd_det.auxiliary.sr.metrics import psnr, shave, ssim


def test_psnr_matches_hand_computation_and_ignores_the_shaved_border():
    hr = torch.full((1, 10, 10), 0.5, dtype=torch.float64)
    sr = hr.clone()
    sr[:, 2:-2, 2:-2] += 0.1                 # error 0.1 everywhere inside the border
    sr[:, :2] = 1.0                          # a wrong border, shaved away at scale 2
    assert psnr(sr, hr, border=2) == pytest.approx(20.0, abs=1e-9)   # 10 log10(1 / 0.01)
    # without shaving the border counts: rows 0-1 err 0.5 (20 px), 4 more px err 0
    border_err = (20 * 0.25 + 36 * 0.01) / 100
    assert psnr(sr, hr, border=0) == pytest.approx(10 * math.log10(1 / border_err))


def test_psnr_on_two_pixel_differences():
    hr = torch.zeros(1, 6, 6, dtype=torch.float64)
    sr = hr.clone()
    sr[0, 2, 2], sr[0, 3, 3] = 0.2, 0.4      # inner 4x4 after shaving 1 px
    mse = (0.2 ** 2 + 0.4 ** 2) / 16
    assert psnr(sr, hr, border=1) == pytest.approx(10 * math.log10(1 / mse))
    assert psnr(hr, hr, border=1) == float("inf")


def test_ssim_of_constant_images_matches_formula():
    a, b = torch.full((1, 20, 20), 100 / 255), torch.full((1, 20, 20), 120 / 255)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1)
    assert ssim(a, b, border=2) == pytest.approx(expected, rel=1e-6)
    noisy = torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(0))
    assert ssim(noisy, noisy, border=3) == pytest.approx(1.0)
    assert ssim(noisy, noisy.flip(-1), border=3) < 0.5


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), border=1)
    with pytest.raises(ValueError, match="too small"):
        shave(torch.zeros(1, 4, 4), 2)
