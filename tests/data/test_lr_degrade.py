"""The LR degradation transform: sizes, the degraded fraction, determinism, input forms."""
import pytest
import torch
import torch.nn.functional as F

from kd_det.data import LR_SIZES, LRDegradation, down_up


def _faces(n=8, side=64, seed=0):
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", LR_SIZES)
def test_down_up_goes_through_the_requested_size_and_back(size):
    x = _faces(2)
    y = down_up(x, size)
    assert y.shape == x.shape and y.dtype == x.dtype
    low = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    assert torch.allclose(y, F.interpolate(low, size=(64, 64), mode="bilinear"))
    assert not torch.allclose(y, x, atol=0.05)


def test_down_up_keeps_the_aspect_ratio_and_integer_images():
    x = (torch.rand(3, 40, 80) * 255).to(torch.uint8)
    y = down_up(x, 10)  # shorter side 40 -> 10, so 10 x 20
    low = F.interpolate(x[None].float(), size=(10, 20), mode="bilinear", antialias=True)
    expected = F.interpolate(low, size=(40, 80), mode="bilinear").round().clamp(0, 255)
    assert y.dtype == torch.uint8 and torch.equal(y, expected[0].to(torch.uint8))
    assert torch.equal(down_up(x, 40), x)  # not smaller than the image: unchanged


def test_degraded_images_use_the_drawn_size_and_the_rest_are_untouched():
    x = _faces(32)
    t = LRDegradation(prob=0.5, sizes=(8, 16), seed=3)
    ref = LRDegradation(prob=0.5, sizes=(8, 16), seed=3)
    choices = [ref.draw() for _ in range(len(x))]
    y = t(x)
    assert any(c is None for c in choices) and any(c is not None for c in choices)
    for xi, yi, c in zip(x, y, choices):
        if c is None:
            assert torch.equal(xi, yi)
        else:
            assert c[0] in (8, 16) and c[1] == 0.0  # blur_prob defaults to 0
            assert torch.equal(yi, down_up(xi, c[0]))


def test_fraction_sizes_and_blur_follow_the_probabilities():
    t = LRDegradation(prob=0.4, blur_prob=0.5, blur_sigma=(0.5, 1.5), seed=0)
    draws = [t.draw() for _ in range(5000)]
    kept = [d for d in draws if d is not None]
    assert len(kept) / len(draws) == pytest.approx(0.4, abs=0.03)
    sizes = [d[0] for d in kept]
    assert set(sizes) == set(LR_SIZES)
    for s in LR_SIZES:
        assert sizes.count(s) / len(kept) == pytest.approx(0.2, abs=0.04)
    blurred = [d[1] for d in kept if d[1] > 0]
    assert len(blurred) / len(kept) == pytest.approx(0.5, abs=0.04)
    assert min(blurred) >= 0.5 and max(blurred) <= 1.5


def test_deterministic_given_the_seed():
    x = _faces(16)
    kw = dict(prob=0.6, blur_prob=0.5)
    a, b = LRDegradation(**kw, seed=7)(x), LRDegradation(**kw, seed=7)(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, LRDegradation(**kw, seed=8)(x))
    # an external generator gives the same stream as the seed
    c = LRDegradation(**kw, seed=0)(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, c)


def test_one_image_a_list_and_a_batch_get_the_same_draws():
    x = _faces(4)
    batch = LRDegradation(prob=1.0, seed=1)(x)
    listed = LRDegradation(prob=1.0, seed=1)(list(x))
    one_by_one = LRDegradation(prob=1.0, seed=1)
    assert torch.equal(torch.stack(listed), batch)
    assert torch.equal(torch.stack([one_by_one(xi) for xi in x]), batch)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="prob"):
        LRDegradation(prob=1.5)
    with pytest.raises(ValueError, match="sizes"):
        LRDegradation(sizes=(0, 8))
    with pytest.raises(ValueError, match="blur_sigma"):
        LRDegradation(blur_sigma=(2.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        LRDegradation()(torch.rand(64, 64))
