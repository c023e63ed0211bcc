"""avitalk.motion: configs and presets, network shapes in arkit52 and flame, determinism, variable
lengths and padding, the denoiser's null condition, InfoNCE golden values, the lip-vertex loss,
reference-frame sampling and a short overfit of the tiny generator."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from avitalk.diffusion import NoiseSchedule
from avitalk.errors import AvitalkError
from avitalk.motion import (
    LipBasis,
    LossConfig,
    Stage2Config,
    build_stage2,
    crop_window,
    diffusion_x0_loss,
    direct_mapping_loss,
    info_nce,
    lip_vertex_loss,
    motion_prior_loss,
    preset,
    random_window,
    reconstruction_loss,
    reference_frames,
    reference_indices,
    sample_style,
    stage2_align_loss,
    velocity_loss,
    window_length,
)
from avitalk.spaces import ARKIT52, FLAME


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are fastest single-threaded (and the CI machine is shared); restore afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _batch(cfg: Stage2Config, b: int = 3, t: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = cfg.window if t is None else t
    return {
        "content": torch.randn(b, t, cfg.content_dim, generator=g),
        "refs": torch.randn(b, cfg.n_ref, cfg.motion_dim, generator=g),
        "motion": torch.randn(b, t, cfg.motion_dim, generator=g),
        "text": torch.randn(b, cfg.text_dim, generator=g),
    }


# -------------------------------------------------------------------------------------------- config


def test_config_round_trip_and_unknown_keys():
    cfg = Stage2Config.default(space="flame", generator={"n_layer": 2})
    assert cfg.motion_dim == FLAME.dim == 53 and cfg.generator.n_layer == 2 and cfg.generator.n_embd == 192
    assert Stage2Config.from_dict(cfg.to_dict()) == cfg
    assert Stage2Config().motion_dim == ARKIT52.dim == 55
    assert cfg.loss.lambda_diff == 30.0
    with pytest.raises(AvitalkError, match=r"unknown key.*stage2: windw"):
        Stage2Config.from_dict({"windw": 3})
    with pytest.raises(AvitalkError, match=r"stage2\.denoiser: cfg_drop"):
        Stage2Config.from_dict({"denoiser": {"cfg_drop": 0.1}})
    with pytest.raises(AvitalkError, match="unknown motion space"):
        Stage2Config(space="nope")
    with pytest.raises(AvitalkError, match="divide"):
        Stage2Config.tiny(generator={"n_embd": 33})
    with pytest.raises(AvitalkError, match="unknown stage-2 preset"):
        preset("huge")


def test_preset_param_counts():
    tiny = build_stage2(preset("tiny")).param_counts()
    default = build_stage2(preset("default")).param_counts()
    assert tiny == {
        "style_encoder": 15120,
        "generator": 45271,
        "aligner": 12849,
        "denoiser": 16640,
        "total": 89880,
    }
    assert default["total"] == 7_199_288 and default["generator"] == 3_374_071
    assert default["total"] <= 10_000_000
    direct = build_stage2(preset("tiny", prior="direct"))
    assert direct.denoiser is None and direct.direct is not None


# ------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("space", ["arkit52", "flame"])
def test_shapes_and_tiny_forward_backward(space):
    torch.manual_seed(0)
    cfg = preset("tiny", space=space)
    m = build_stage2(cfg)
    x = _batch(cfg, b=4)
    sched = NoiseSchedule.cosine(cfg.denoiser.num_steps)
    m.generator(x["content"], m.style_encoder(x["refs"]))  # warm-up (first-call allocations)
    t0 = time.perf_counter()
    z = m.style_encoder(x["refs"])
    out = m.generator(x["content"], z)
    c = m.aligner(x["text"])
    assert z.shape == (4, cfg.style_dim) and c.shape == (4, cfg.style_dim)
    assert out.shape == (4, cfg.window, cfg.motion_dim)
    motion = motion_prior_loss(out, x["motion"], cfg.loss)
    g = torch.Generator().manual_seed(0)
    prior = diffusion_x0_loss(m.denoiser, z, c, sched, cond_drop=0.5, generator=g)
    align = stage2_align_loss(c, z, m.aligner.logit_scale, prior, cfg.loss.lambda_diff)
    (motion.total + align.total).backward()
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, elapsed
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # z is detached in the stage-2 losses: only the motion loss reaches the style encoder
    m.zero_grad()
    prior = diffusion_x0_loss(m.denoiser, m.style_encoder(x["refs"]), m.aligner(x["text"]), sched, generator=g)
    stage2_align_loss(m.aligner(x["text"]), m.style_encoder(x["refs"]), m.aligner.logit_scale, prior).total.backward()
    assert all(p.grad is None for p in m.style_encoder.parameters())
    assert all(p.grad is not None for p in m.aligner.parameters())


def test_style_embedding_standardised_and_padding():
    torch.manual_seed(0)
    cfg = preset("tiny")
    m = build_stage2(cfg).eval()
    x = _batch(cfg, b=2)
    z = m.style_encoder(x["refs"])
    assert torch.allclose(z.mean(-1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z.var(-1, unbiased=False), torch.ones(2), atol=1e-3)
    # padded reference frames do not change z
    valid = torch.ones(2, cfg.n_ref + 3, dtype=torch.bool)
    valid[:, -3:] = False
    padded = torch.cat([x["refs"], 100 * torch.randn(2, 3, cfg.motion_dim)], dim=1)
    assert torch.allclose(m.style_encoder(padded, valid), z, atol=1e-5)


def test_generator_variable_length_and_padding():
    torch.manual_seed(0)
    cfg = preset("tiny")
    gen = build_stage2(cfg).generator.eval()
    z = torch.randn(2, cfg.style_dim)
    for t in (1, 7, cfg.window, 3 * cfg.window):
        assert gen(torch.randn(2, t, cfg.content_dim), z).shape == (2, t, cfg.motion_dim)
    # a padded batch gives the same outputs at real frames as the unpadded clip
    short = torch.randn(1, 10, cfg.content_dim)
    alone = gen(short, z[:1])
    batch = torch.cat([torch.cat([short, torch.randn(1, 6, cfg.content_dim)], 1), torch.randn(1, 16, cfg.content_dim)])
    valid = torch.ones(2, 16, dtype=torch.bool)
    valid[0, 10:] = False
    out = gen(batch, z, valid)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0, :10], alone[0], atol=1e-5)


def test_generator_band_attention_is_local():
    torch.manual_seed(0)
    cfg = preset("tiny", generator={"attn_window": 3})
    gen = build_stage2(cfg).generator.eval()
    z = torch.randn(1, cfg.style_dim)
    a = torch.randn(1, 40, cfg.content_dim)
    b = a.clone()
    b[0, 0] += 1.0
    diff = (gen(a, z) - gen(b, z)).abs().amax(-1)[0]  # (T,)
    reach = cfg.generator.n_layer * 3
    assert diff[: reach + 1].max() > 0 and diff[reach + 1 :].max() == 0


def test_style_changes_generated_motion():
    torch.manual_seed(0)
    cfg = preset("tiny")
    m = build_stage2(cfg).eval()
    with torch.no_grad():  # FiLM starts at zero, so nudge it to check that z reaches every block
        for blk in m.generator.blocks:
            blk.film.weight.normal_(std=0.1)
    content = torch.randn(1, 20, cfg.content_dim)
    out1 = m.generator(content, torch.randn(1, cfg.style_dim))
    out2 = m.generator(content, torch.randn(1, cfg.style_dim))
    assert (out1 - out2).abs().max() > 1e-3


# -------------------------------------------------------------------------------------- determinism


def test_determinism_with_seed():
    def run(seed: int) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        cfg = preset("tiny")
        m = build_stage2(cfg).eval()
        x = _batch(cfg)
        sched = NoiseSchedule.cosine(cfg.denoiser.num_steps)
        c = m.aligner(x["text"])
        z = m.style_encoder(x["refs"])
        loss = diffusion_x0_loss(m.denoiser, z, c, sched, generator=torch.Generator().manual_seed(seed))
        zs = sample_style(m.denoiser, c.detach(), sched, generator=torch.Generator().manual_seed(seed))
        return m.state_dict(), m.generator(x["content"], z), loss, zs

    sd1, out1, l1, s1 = run(3)
    sd2, out2, l2, s2 = run(3)
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert torch.equal(out1, out2) and torch.equal(l1, l2) and torch.equal(s1, s2)
    sd3, _, _, s3 = run(4)
    assert not torch.equal(sd1["generator.head.weight"], sd3["generator.head.weight"])
    assert not torch.equal(s1, s3)


# ----------------------------------------------------------------------------------------- denoiser


def test_denoiser_null_condition_and_guidance():
    torch.manual_seed(0)
    cfg = preset("tiny")
    den = build_stage2(cfg).denoiser.eval()
    b, dz = 4, cfg.style_dim
    x_t, t, c = torch.randn(b, dz), torch.tensor([0, 10, 50, 99]), torch.randn(b, dz)
    uncond = den(x_t, t)
    assert uncond.shape == (b, dz)
    assert torch.allclose(uncond, den(x_t, t, den.null_cond(b)))
    assert torch.allclose(uncond, den(x_t, t, c, torch.zeros(b, dtype=torch.bool)))
    cond = den(x_t, t, c)
    assert not torch.allclose(cond, uncond)
    keep = torch.tensor([True, False, True, False])
    mixed = den(x_t, t, c, keep)
    assert torch.allclose(mixed[keep], cond[keep]) and torch.allclose(mixed[~keep], uncond[~keep])
    # the loss with cond_drop=1-eps uses the null only; the null parameter gets a gradient then
    sched = NoiseSchedule.cosine(cfg.denoiser.num_steps)
    diffusion_x0_loss(den, torch.randn(b, dz), c, sched, cond_drop=0.999, generator=torch.Generator()).backward()
    assert den.null.grad is not None and den.null.grad.abs().sum() > 0
    # classifier-free guided DDIM through avitalk.diffusion.sample
    g = torch.Generator().manual_seed(0)
    z1 = sample_style(den, c, sched, steps=5, guidance=1.0, generator=g)
    z2 = sample_style(den, c, sched, steps=5, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert z1.shape == z2.shape == (b, dz) and torch.isfinite(z2).all() and not torch.allclose(z1, z2)


# --------------------------------------------------------------------------------------------- losses


def test_info_nce_golden_and_temperature_gradient():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[2.0, 0.0], [0.6, 0.8]])  # cosine ignores the norm of row 0
    # logits at scale s: s * [[1, .6], [0, .8]]; loss = mean of the 4 row/column cross-entropies
    ls = torch.zeros((), requires_grad=True)
    loss = info_nce(c, z, ls)
    want = 0.25 * (
        -1 + math.log(math.e + math.exp(0.6))
        - 0.8 + math.log(1 + math.exp(0.8))
        - 1 + math.log(math.e + 1)
        - 0.8 + math.log(math.exp(0.6) + math.exp(0.8))
    )  # fmt: skip
    assert loss.item() == pytest.approx(want, rel=1e-6) and want == pytest.approx(0.448879118812)
    loss.backward()
    # d loss / d log s = s * mean_i(-l_ii + sum_j p_ij l_ij)
    assert ls.grad.item() == pytest.approx(-0.191879993240, rel=1e-5)
    ls2 = torch.tensor(math.log(2.0), requires_grad=True)
    loss2 = info_nce(c, z, ls2)
    loss2.backward()
    assert loss2.item() == pytest.approx(0.298736167570, rel=1e-6)
    assert ls2.grad.item() == pytest.approx(-0.228930444721, rel=1e-5)
    # clamped like CLIP: no gradient above log 100
    ls3 = torch.tensor(10.0, requires_grad=True)
    info_nce(c, z, ls3).backward()
    assert ls3.grad.item() == 0.0
    # chance level log B for identical rows
    assert info_nce(torch.ones(3, 4), torch.ones(3, 4), torch.tensor(1.0)).item() == pytest.approx(math.log(3))


def test_aligner_temperature_init():
    m = build_stage2(preset("tiny"))
    assert m.aligner.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_stage2_align_loss_combination():
    g = torch.Generator().manual_seed(0)
    c, z = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    prior = torch.tensor(0.5)
    out = stage2_align_loss(c, z, torch.tensor(1.0), prior)
    assert out.total.item() == pytest.approx(out.cont.item() + 30 * 0.5)
    assert out.cont.item() == pytest.approx(info_nce(c, z, torch.tensor(1.0)).item())
    off = stage2_align_loss(c, z, torch.tensor(1.0), prior, lambda_diff=2.0, contrastive=False)
    assert off.cont.item() == 0 and off.total.item() == pytest.approx(1.0)
    m = build_stage2(preset("tiny", prior="direct"))
    assert direct_mapping_loss(m.direct, torch.zeros(4, 16), torch.randn(4, 16)).item() > 0


def _toy_lip_basis(d: int) -> LipBasis:
    g = np.random.default_rng(0)
    neutral = g.normal(size=(30, 3)).astype(np.float32)
    basis = (0.01 * g.normal(size=(5, 30, 3))).astype(np.float32)
    return LipBasis.from_linear(neutral, basis, np.array([2, 5, 7, 11]), [0, 1, 2, 3, d - 1])


def test_lip_vertex_loss():
    lip = _toy_lip_basis(ARKIT52.dim)
    assert lip.neutral_lips.shape == (4, 3) and lip.basis_lips.shape == (5, 4, 3)
    a = torch.randn(2, 6, ARKIT52.dim)
    assert lip_vertex_loss(a, a.clone(), lip).item() == 0.0
    b = a.clone()
    b[..., 10] += 5.0  # a channel without a lip shape: no lip loss
    assert lip_vertex_loss(a, b, lip).item() == 0.0
    b[0, 3, 1] += 1.0  # one frame, one channel
    got = lip_vertex_loss(a, b, lip)
    dv = lip.basis_lips[1] * 1000.0  # (L, 3) mm
    assert got.item() > 0 and got.item() == pytest.approx(dv.square().sum(-1).mean().item() / 12, rel=1e-5)
    # masked frames do not count; vertices() = neutral + offsets
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[0, 3] = False
    assert lip_vertex_loss(a, b, lip, valid).item() == 0.0
    verts = lip.vertices(b) - lip.vertices(a)
    assert torch.allclose(verts[0, 3], lip.basis_lips[1], atol=1e-6)
    # works on the built-in ARKit face sliced by the caller
    from avitalk.face.builtin import BuiltinFace

    face = BuiltinFace.create()
    fl = LipBasis.from_linear(face.neutral, face.basis, face.regions["lips"], range(52))
    m = torch.zeros(1, 2, ARKIT52.dim)
    m2 = m.clone()
    m2[..., ARKIT52.index("jawOpen")] = 1.0
    assert lip_vertex_loss(m, m2, fl).item() > 1.0  # mm²


def test_reconstruction_and_velocity_masks():
    a = torch.zeros(1, 5, 3)
    b = torch.zeros(1, 5, 3)
    b[0, 4] = 2.0  # error only in the last frame
    valid = torch.tensor([[True, True, True, True, False]])
    assert reconstruction_loss(a, b, valid).item() == 0.0
    assert velocity_loss(a, b, valid).item() == 0.0
    assert reconstruction_loss(a, b).item() == pytest.approx(4.0 * 3 / 15)
    assert reconstruction_loss(a, b, kind="l1").item() == pytest.approx(2.0 * 3 / 15)
    w = torch.tensor([1.0, 0.0, 0.0])
    assert reconstruction_loss(a, b, weight=w).item() == pytest.approx(4.0 / 15)
    assert velocity_loss(a, b).item() == pytest.approx(4.0 * 3 / 12)
    assert velocity_loss(a[:, :1], b[:, :1]).item() == 0.0
    terms = motion_prior_loss(a, b, LossConfig(velocity=2.0, lip=0.0))
    assert terms.total.item() == pytest.approx(terms.reconstruction.item() + 2 * terms.velocity.item())


# ---------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("mode", ["random", "contiguous"])
def test_reference_frames_never_overlap_window(mode):
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(12, 120))
        length = int(rng.integers(1, n - 8))
        margin = int(rng.integers(0, 3))
        start = random_window(n, length, rng)
        idx = reference_indices(n, (start, length), 8, rng, mode=mode, margin=margin)
        assert idx.shape == (8,) and idx.dtype == np.int64 and np.all(np.diff(idx) >= 0)
        assert np.all((idx < start - margin) | (idx >= start + length + margin)), (n, start, length, idx)
        assert idx.min() >= 0 and idx.max() < n
        if mode == "contiguous" and (start - margin >= 8 or n - start - length - margin >= 8):
            assert np.all(np.diff(idx) == 1)
    motion = np.arange(40, dtype=np.float32)[:, None].repeat(3, 1)
    refs = reference_frames(torch.from_numpy(motion), (10, 20), 5, np.random.default_rng(1))
    assert refs.shape == (5, 3) and bool(((refs[:, 0] < 10) | (refs[:, 0] >= 30)).all())
    # few frames outside: drawn with replacement; none: a clear error
    assert reference_indices(12, (0, 10), 8, rng).tolist().count(10) >= 1
    with pytest.raises(AvitalkError, match="outside"):
        reference_indices(10, (0, 10), 4, rng)
    assert window_length(50, 100, 8) == 42
    with pytest.raises(AvitalkError):
        random_window(50, 45, rng, min_outside=8)
    assert crop_window(motion, 5, 10).shape == (10, 3)


# --------------------------------------------------------------------------------------------- overfit


def test_tiny_generator_overfits_one_sample():
    torch.manual_seed(0)
    cfg = preset("tiny")
    m = build_stage2(cfg)
    t = cfg.window
    g = torch.Generator().manual_seed(0)
    content = torch.randn(1, t, cfg.content_dim, generator=g)
    phase = torch.linspace(0, 4 * math.pi, t)[:, None] + torch.rand(cfg.motion_dim, generator=g) * 6
    target = torch.sin(phase)[None]  # (1, T, D) smooth motion
    refs = target[:, :: t // cfg.n_ref][:, : cfg.n_ref]
    params = [*m.generator.parameters(), *m.style_encoder.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(200):
        out = m.generator(content, m.style_encoder(refs))
        loss = reconstruction_loss(out, target) + velocity_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
