"""PSNR and SSIM on the Y channel with `scale` pixels shaved, as SR papers report them."""
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "shave"]


def shave(img: torch.Tensor, border: int) -> torch.Tensor:
    """Drop `border` pixels on each side of the last two dimensions."""
    if border <= 0:
        return img
    if min(img.shape[-2:]) <= 2 * border:
        raise ValueError(f"image {tuple(img.shape[-2:])} is too small to shave {border} px")
    return img[..., border:-border, border:-border]


def _check(sr: torch.Tensor, hr: torch.Tensor) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape")


def psnr(sr: torch.Tensor, hr: torch.Tensor, border: int, data_range: float = 1.0) -> float:
    """10 log10(range^2 / MSE) after clamping SR to [0, range] and shaving `border`."""
    _check(sr, hr)
    sr = shave(sr.double().clamp(0, data_range), border)
    hr = shave(hr.double(), border)
    mse = torch.mean((sr - hr) ** 2)
    return float("inf") if mse == 0 else float(10 * torch.log10(data_range ** 2 / mse))


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(sr: torch.Tensor, hr: torch.Tensor, border: int, data_range: float = 1.0) -> float:
    """Wang et al. 2004 SSIM (11x11 Gaussian window, sigma 1.5, 'valid' filtering), on
    images scaled to [0, 255] as the usual SR evaluation code does."""
    _check(sr, hr)
    k = 255.0 / data_range
    a = shave(sr.double().clamp(0, data_range) * k, border)
    b = shave(hr.double() * k, border)
    a, b = a.reshape(1, 1, *a.shape[-2:]), b.reshape(1, 1, *b.shape[-2:])
    g = _gaussian_1d()
    # The 2-D window is separable: filter the five maps at once, rows then columns.
    maps = torch.cat([a, b, a * a, b * b, a * b])
    maps = F.conv2d(F.conv2d(maps, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    mu_a, mu_b, aa, bb, ab = maps
    var_a, var_b, cov = aa - mu_a ** 2, bb - mu_b ** 2, ab - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())
