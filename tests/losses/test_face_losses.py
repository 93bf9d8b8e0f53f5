"""MK-MMD (DAN bandwidths) and the LR face KD objective against hand-written formulas."""
import math

import pytest
import torch

from kd_det.losses import (
    DAN_MULTIPLIERS,
    dan_bandwidths,
    face_kd_loss,
    hinton_kd_loss,
    mk_mmd,
    normalized_l2_loss,
)


def _sq_dists(rows):
    return [[sum((a - b) ** 2 for a, b in zip(u, v)) for v in rows] for u in rows]


def _mmd_by_hand(x, y, base=None):
    """The DAN estimator with Python loops; `base` fixes the bandwidth (None: the rule)."""
    z = x + y
    d2 = _sq_dists(z)
    m = len(z)
    if base is None:
        base = sum(d2[i][j] for i in range(m) for j in range(m) if i != j) / (m * m - m)
    k = [[sum(math.exp(-d / (base * s)) for s in (0.25, 0.5, 1, 2, 4)) for d in row]
         for row in d2]
    n = len(x)

    def block(rows, cols):
        return sum(k[i][j] for i in rows for j in cols) / (len(rows) * len(cols))

    xs, ys = range(n), range(n, 2 * n)
    return block(xs, xs) + block(ys, ys) - 2 * block(xs, ys)


def test_bandwidths_are_dan_multiples_of_the_mean_off_diagonal_distance():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    d2 = torch.cdist(z, z) ** 2
    # off-diagonal squared distances: 1, 4, 5 (each twice) -> base = 20 / 6
    base = (1 + 4 + 5) * 2 / 6
    assert DAN_MULTIPLIERS == (0.25, 0.5, 1.0, 2.0, 4.0)
    assert torch.allclose(dan_bandwidths(d2), torch.tensor([base * s for s in DAN_MULTIPLIERS]))


def test_mk_mmd_matches_the_formula_by_hand():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) + 0.5
    expected = _mmd_by_hand(x.tolist(), y.tolist())
    assert mk_mmd(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_mk_mmd_is_zero_for_identical_batches():
    x = torch.randn(6, 8)
    assert mk_mmd(x, x.clone()).item() == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_mk_mmd_is_non_negative_and_grows_with_the_shift(seed):
    g = torch.Generator().manual_seed(seed)
    x, noise = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    near, far = mk_mmd(x, x + 0.1 * noise), mk_mmd(x, x + 0.1 * noise + 3.0)
    assert near.item() >= 0.0 and far.item() > near.item()


def test_no_gradient_flows_through_the_bandwidth():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, generator=g, requires_grad=True)
    y = torch.randn(4, 3, generator=g)
    mk_mmd(x, y).backward()
    # the same estimator with the bandwidth frozen to its value, as a constant
    z = torch.cat([x, y])
    base = float(((z[:, None] - z[None]) ** 2).sum(-1).sum() / (8 * 8 - 8))
    x2 = x.detach().clone().requires_grad_(True)
    z2 = torch.cat([x2, y])
    d2 = ((z2[:, None] - z2[None]) ** 2).sum(-1)
    k = sum(torch.exp(-d2 / (base * s)) for s in DAN_MULTIPLIERS)
    (k[:4, :4].mean() + k[4:, 4:].mean() - 2 * k[:4, 4:].mean()).backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)


def test_mk_mmd_refuses_mismatched_batches():
    with pytest.raises(ValueError, match="one shape"):
        mk_mmd(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="two samples"):
        dan_bandwidths(torch.zeros(1, 1))


def test_normalized_l2_by_hand():
    s, t = torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[0.0, 2.0], [0.0, -5.0]])
    # rows: (0.6, 0.8) - (0, 1) -> 0.36 + 0.04;  (1, 0) - (0, -1) -> 2
    assert normalized_l2_loss(s, t).item() == pytest.approx((0.40 + 2.0) / 2)


@pytest.mark.parametrize("feature_loss", ["mmd", "l2"])
def test_face_kd_loss_is_the_weighted_sum_by_hand(feature_loss):
    g = torch.Generator().manual_seed(2)
    zs, zt = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    fs, ft = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    y = torch.tensor([0, 3, 1, 4])
    w1, w2, w3, T = 0.7, 0.2, 3.0, 2.0
    out = face_kd_loss(zs, zt, y, fs, ft, hard_weight=w1, soft_weight=w2, feat_weight=w3,
                       temperature=T, feature_loss=feature_loss)
    assert set(out) == {"loss_cls", "loss_kd", f"loss_{feature_loss}"}

    ce = sum(-math.log(math.exp(r[c]) / sum(math.exp(v) for v in r))
             for r, c in zip(zs.tolist(), y.tolist())) / 4
    kl = 0.0
    for a, b in zip(zs.tolist(), zt.tolist()):
        ps = [math.exp(v / T) / sum(math.exp(u / T) for u in a) for v in a]
        pt = [math.exp(v / T) / sum(math.exp(u / T) for u in b) for v in b]
        kl += sum(q * math.log(q / p) for p, q in zip(ps, pt)) / 4
    ns = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in fs.tolist()]
    nt = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in ft.tolist()]
    if feature_loss == "mmd":
        feat = _mmd_by_hand(ns, nt)
    else:
        feat = sum(sum((a - b) ** 2 for a, b in zip(u, v)) for u, v in zip(ns, nt)) / 4
    expected = w1 * ce + w2 * T * T * kl + w3 * feat
    assert sum(out.values()).item() == pytest.approx(expected, rel=1e-5)
    # the soft term is kd_det's one Hinton KD, not another soft CE
    assert out["loss_kd"].item() == pytest.approx(w2 * hinton_kd_loss(zs, zt, T).item())


def test_face_kd_loss_sends_no_gradient_to_the_teacher():
    zs = torch.randn(4, 5, requires_grad=True)
    zt = torch.randn(4, 5, requires_grad=True)
    fs = torch.randn(4, 6, requires_grad=True)
    ft = torch.randn(4, 6, requires_grad=True)
    sum(face_kd_loss(zs, zt, torch.tensor([0, 1, 2, 3]), fs, ft).values()).backward()
    assert zs.grad is not None and fs.grad is not None
    assert zt.grad is None and ft.grad is None
    with pytest.raises(ValueError, match="feature_loss"):
        face_kd_loss(zs, zt, torch.tensor([0, 1, 2, 3]), fs, ft, feature_loss="cosine")

