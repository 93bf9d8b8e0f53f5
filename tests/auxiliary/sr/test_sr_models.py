"""FSRCNN, the PISR teacher and the student distiller."""
import pytest
import torch

from kd_det.auxiliary.sr.distiller import PISRDistiller
from kd_det.auxiliary.sr.models import FSRCNN, PISREncoder, PISRTeacher, SRBaseline, VIDHead

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_has_12644_parameters_and_upscales(scale):
    net = FSRCNN(scale)
    assert sum(p.numel() for p in net.parameters()) == 12644
    out, feat = net.forward_with_feature(torch.rand(2, 1, 7, 9))
    assert out.shape == (2, 1, 7 * scale, 9 * scale)
    assert feat.shape == (2, 56, 7, 9)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_teacher_encoder_maps_hr_to_lr_size(scale):
    hr = torch.rand(2, 1, 12 * scale, 5 * scale)
    assert PISREncoder(scale)(hr).shape == (2, 1, 12, 5)
    with pytest.raises(ValueError, match="multiple of the scale"):
        PISREncoder(scale)(torch.rand(1, 1, 12 * scale + 1, 12 * scale))


def _teacher(scale=2):
    return PISRTeacher(PISREncoder(scale, width=8), FSRCNN(scale))


def test_student_starts_from_the_teacher_decoder():
    teacher = _teacher()
    with torch.no_grad():                    # make the decoder differ from any fresh init
        for p in teacher.decoder.parameters():
            p.add_(torch.randn_like(p))
    model = PISRDistiller(FSRCNN(2), teacher, VIDHead(56))
    t_sd, s_sd = teacher.decoder.state_dict(), model.student.state_dict()
    assert t_sd.keys() == s_sd.keys()
    assert all(torch.equal(t_sd[k], s_sd[k]) for k in t_sd)
    assert all(not k.startswith("teacher") for k in model.state_dict())
    cold = PISRDistiller(FSRCNN(2), teacher, VIDHead(56), init_from_teacher=False)
    assert not torch.equal(cold.student.feature[0].weight, teacher.decoder.feature[0].weight)


@pytest.mark.parametrize("form", ["laplace", "gaussian"])
def test_distiller_losses_and_frozen_teacher(form):
    torch.manual_seed(0)
    teacher = _teacher()
    model = PISRDistiller(FSRCNN(2), teacher, VIDHead(56, form), vid_weight=1.0)
    before = model.teacher_params_snapshot()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = {"lr": torch.rand(2, 1, 8, 8), "hr": torch.rand(2, 1, 16, 16)}
    for _ in range(3):
        losses = model(batch)
        assert set(losses) == {"loss_rec", "loss_vid"}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    after = model.teacher_params_snapshot()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.training
    model.eval()
    assert model(batch).shape == (2, 1, 16, 16)


def test_vid_head_rejects_unknown_form():
    with pytest.raises(ValueError, match="SR.KD.VID_FORM"):
        VIDHead(4, "cauchy")


def test_tiny_fsrcnn_learns_a_smooth_upscaling():
    """A few Adam steps of the L1 baseline lower its loss on a fixed smooth batch."""
    torch.manual_seed(0)
    hr = torch.nn.functional.interpolate(torch.rand(4, 1, 6, 6), size=24, mode="bilinear")
    batch = {"lr": torch.nn.functional.avg_pool2d(hr, 2), "hr": hr}
    model = SRBaseline(FSRCNN(2))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(60):
        loss = model(batch)["loss_rec"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_deconvolution_and_encoder_are_centred_on_the_lr_pixels(scale):
    """Bicubic downscaling makes LR pixel i from HR rows i*s .. i*s+s-1. The kernel taps
    that touch exactly those rows, [padding, padding + s), must sit at the centre of the
    deconvolution's 9 taps and of the encoder's stride-s 5 taps (to half a pixel at even
    scales; the usual padding k//2 puts them a pixel off at x3). A box on those taps
    copies each LR pixel onto its block, and the encoder's box averages it back."""
    deconv, conv = FSRCNN(scale).deconv, PISREncoder(scale).body[2]
    for layer, k in ((deconv, 9), (conv, 5)):
        assert abs(layer.padding[0] + (scale - 1) / 2 - k // 2) <= 0.5
    lr = torch.rand(1, 1, 5, 6)
    p = deconv.padding[0]
    w = torch.zeros(1, 1, 9, 9)
    w[..., p:p + scale, p:p + scale] = 1
    hr = torch.nn.functional.conv_transpose2d(lr, w, stride=scale, padding=p,
                                              output_padding=deconv.output_padding[0])
    assert torch.equal(hr, lr.repeat_interleave(scale, 2).repeat_interleave(scale, 3))
    p = conv.padding[0]
    k = torch.zeros(1, 1, 5, 5)
    k[..., p:p + scale, p:p + scale] = 1 / scale ** 2
    pooled = torch.nn.functional.conv2d(hr, k, stride=scale, padding=p)
    assert torch.allclose(pooled, lr, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_residual_networks_start_at_bicubic_resampling(scale):
    torch.manual_seed(0)
    lr = torch.rand(2, 1, 12, 12)
    sr = FSRCNN(scale, residual=True)(lr)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=scale, mode="bicubic")
    assert (sr - bicubic).abs().max() < 0.01           # deconvolution starts near 0
    assert (FSRCNN(scale)(lr) - 0.5).abs().max() < 0.01  # without: a flat grey image
    hr = torch.rand(2, 1, 12 * scale, 12 * scale)
    down = torch.nn.functional.interpolate(hr, scale_factor=1 / scale, mode="bicubic",
                                           antialias=True)
    assert (PISREncoder(scale, width=8, residual=True)(hr) - down).abs().max() < 0.01
    assert (PISREncoder(scale, width=8)(hr) - down).abs().max() > 0.1
    assert sum(p.numel() for p in FSRCNN(scale, residual=True).parameters()) == 12644


def test_sr_network_is_what_makes_the_sr_image():
    teacher = _teacher()
    assert SRBaseline(FSRCNN(2)).sr_network() is not None
    assert teacher.sr_network() is teacher
    model = PISRDistiller(FSRCNN(2), teacher, VIDHead(56))
    assert model.sr_network() is model.student
