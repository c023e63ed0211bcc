"""avitalk.diffusion: schedule golden values, forward process, prediction conversions, DDIM/DDPM
sampling with oracle and analytic denoisers, classifier-free guidance and seeding."""

from __future__ import annotations

import math

import pytest
import torch

from avitalk.diffusion import (
    NoiseSchedule,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    guided_prediction,
    sample,
)
from avitalk.errors import AvitalkError

# ------------------------------------------------------------------------------------------ schedules


def test_linear_schedule_golden():
    s = NoiseSchedule.linear(1000)
    ab = s.alphas_cumprod
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    # DDPM's well-known terminal value abar_999 = 4.0358e-5
    for t, want in [(0, 0.9999), (250, 0.5214230306), (500, 0.07779665837), (999, 4.035829765e-05)]:
        assert ab[t].item() == pytest.approx(want, rel=1e-8), t
    # rescaled for short schedules (improved-diffusion): T=100 spans 1e-3 .. 0.2
    s100 = NoiseSchedule.linear(100)
    assert s100.betas[0].item() == pytest.approx(1e-3) and s100.betas[-1].item() == pytest.approx(0.2)
    assert s100.alphas_cumprod[-1].item() == pytest.approx(2.039008976e-05, rel=1e-8)


def test_cosine_schedule_golden():
    s = NoiseSchedule.cosine(1000)
    ab = s.alphas_cumprod
    for t, want in [(0, 0.9999587158), (250, 0.8458879865), (500, 0.4922851724), (999, 2.428766907e-09)]:
        assert ab[t].item() == pytest.approx(want, rel=1e-7), t

    # closed form abar(t) = f((t+1)/T) / f(0) wherever beta is not clipped
    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 10, 333, 700, 990):
        assert ab[t].item() == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-9)
    assert s.betas.max().item() == pytest.approx(0.999)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_monotone_and_snr(kind):
    s = NoiseSchedule.from_name(kind, 200)
    ab = s.alphas_cumprod
    assert ab.dtype == torch.float64 and ab.shape == (200,)
    assert bool((ab[1:] < ab[:-1]).all()) and 0 < ab[-1] < ab[0] < 1
    t = torch.arange(200)
    snr = s.snr(t)
    assert bool((snr[1:] < snr[:-1]).all())
    torch.testing.assert_close(snr, ab / (1 - ab))
    assert s.alpha_bar(-1).item() == 1.0
    assert not any(isinstance(v, torch.nn.Parameter) for v in vars(s).values())


def test_schedule_errors():
    with pytest.raises(AvitalkError, match="unknown noise schedule"):
        NoiseSchedule.from_name("sigmoid", 10)
    with pytest.raises(AvitalkError):
        NoiseSchedule.linear(0)
    with pytest.raises(AvitalkError, match="between 0 and 1"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(AvitalkError, match="out of range"):
        NoiseSchedule.linear(10).alpha_bar(torch.tensor([10]))
    with pytest.raises(AvitalkError, match="prediction"):
        NoiseSchedule.linear(10).to_x0(torch.zeros(1), torch.zeros(1), 0, "score")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- forward process


def test_add_noise_statistics():
    s = NoiseSchedule.cosine(100)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    for t in (0, 30, 60, 99):
        a = s.alphas_cumprod[t].item()
        x0 = torch.full((n, 1), 2.0)
        x_t = s.add_noise(x0, torch.randn(n, 1, generator=g), torch.full((n,), t))
        assert x_t.dtype == torch.float32
        assert x_t.mean().item() == pytest.approx(2.0 * math.sqrt(a), abs=5e-3)
        assert x_t.var().item() == pytest.approx(1.0 - a, rel=1e-2, abs=1e-4)
        # variance preserving: unit-variance data stays unit variance
        z = s.add_noise(torch.randn(n, 1, generator=g), torch.randn(n, 1, generator=g), t)
        assert z.var().item() == pytest.approx(1.0, abs=1.5e-2)


def test_add_noise_per_sample_timesteps_broadcast():
    s = NoiseSchedule.linear(50)
    x0 = torch.ones(3, 4, 5)
    t = torch.tensor([0, 25, 49])
    x_t = s.add_noise(x0, torch.zeros_like(x0), t)
    want = s.alphas_cumprod[t].sqrt().float()
    torch.testing.assert_close(x_t, want[:, None, None].expand(3, 4, 5))


@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
def test_prediction_conversions_round_trip(prediction):
    s = NoiseSchedule.cosine(100)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, 100, (8,), generator=g)
    x_t = s.add_noise(x0, eps, t)
    target = {"x0": x0, "eps": eps, "v": s.velocity(x0, eps, t)}[prediction]
    torch.testing.assert_close(s.to_x0(target, x_t, t, prediction), x0)
    torch.testing.assert_close(s.to_eps(target, x_t, t, prediction), eps)
    torch.testing.assert_close(s.from_x0(x0, x_t, t, prediction), target)


def test_sample_timesteps_seeded():
    s = NoiseSchedule.linear(10)
    a = s.sample_timesteps(1000, torch.Generator().manual_seed(3))
    b = s.sample_timesteps(1000, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() == 0 and a.max() == 9


# ----------------------------------------------------------------------------------------- samplers


def test_ddim_timesteps():
    assert ddim_timesteps(10, 1000).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert ddim_timesteps(1, 1000).tolist() == [999]
    assert ddim_timesteps(3, 10).tolist() == [9, 6, 3]
    assert ddim_timesteps(10, 10).tolist() == list(range(9, -1, -1))
    with pytest.raises(AvitalkError):
        ddim_timesteps(11, 10)


def _oracle(x0: torch.Tensor, s: NoiseSchedule, prediction: str = "x0", calls: list | None = None):
    def fn(x_t, t, cond):
        if calls is not None:
            calls.append((x_t.clone(), t.clone()))
        return s.from_x0(x0, x_t, t, prediction)

    return fn


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
def test_ddim_with_oracle_recovers_x0(steps, prediction):
    s = NoiseSchedule.linear(1000)
    x0 = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    out = sample(_oracle(x0, s, prediction), (4, 6), s, steps=steps, prediction=prediction, generator=gen)
    if prediction == "x0":
        assert torch.equal(out, x0)  # the last step returns the x0 estimate itself
    else:
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_ddim_deterministic_trajectory_stays_on_the_forward_line():
    """With the true x0 and eta=0, every x_t equals sqrt(abar) x0 + sqrt(1-abar) eps_T for the initial noise."""
    s = NoiseSchedule.cosine(100)
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_T = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    calls: list = []
    out = sample(_oracle(x0, s, calls=calls), (5, 2), s, steps=7, x_T=x_T)
    assert [int(t[0]) for _, t in calls] == ddim_timesteps(7, 100).tolist()
    eps_T = (x_T - s.alpha_bar(99).sqrt() * x0) / (1 - s.alpha_bar(99)).sqrt()
    for x_t, t in calls:
        torch.testing.assert_close(x_t, s.add_noise(x0, eps_T, t))
    assert torch.equal(out, x0)


def test_ddim_eta1_equals_ddpm_step():
    s = NoiseSchedule.linear(100)
    g = torch.Generator().manual_seed(0)
    x_t, x0 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    for t, t_prev in [(50, 49), (80, 40), (5, -1)]:
        a = ddim_step(s, x_t, x0, t, t_prev, eta=1.0, generator=torch.Generator().manual_seed(7))
        b = ddpm_step(s, x_t, x0, t, t_prev, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ddpm_step(s, x_t, x0, 0, generator=g), x0)


def _mixture_x0(weights, means, stds, s: NoiseSchedule):
    """The optimal (posterior-mean) x0 denoiser E[x0 | x_t] for a 1-D Gaussian mixture."""
    w, mu, sd = (torch.tensor(v, dtype=torch.float64) for v in (weights, means, stds))

    def fn(x_t, t, cond):
        a = s.alpha_bar(t, like=x_t)  # (B, 1)
        var = a * sd**2 + (1 - a)  # (B, K) marginal variance of x_t under component k
        logp = torch.log(w) - 0.5 * torch.log(var) - 0.5 * (x_t - a.sqrt() * mu) ** 2 / var
        r = torch.softmax(logp, dim=1)  # (B, K) responsibilities
        post = mu + a.sqrt() * sd**2 / var * (x_t - a.sqrt() * mu)  # (B, K) E[x0 | x_t, k]
        return (r * post).sum(1, keepdim=True)

    return fn


@pytest.fixture
def one_thread():
    """Thousands of small ops: intra-op threads only add overhead, and on a shared 2-core machine they
    can make the loop ~7x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_ddpm_ancestral_sampling_reproduces_gaussian_mixture(one_thread):
    weights, means, stds = [0.3, 0.7], [-2.0, 1.5], [0.5, 0.3]
    s = NoiseSchedule.linear(1000)
    n = 8000
    x = sample(
        _mixture_x0(weights, means, stds, s),
        (n, 1),
        s,
        sampler="ddpm",
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )[:, 0]
    mean = sum(w * m for w, m in zip(weights, means, strict=True))
    var = sum(w * (sd**2 + m**2) for w, m, sd in zip(weights, means, stds, strict=True)) - mean**2
    assert x.mean().item() == pytest.approx(mean, abs=0.06)  # ~3.5 standard errors at n = 8000
    assert x.var().item() == pytest.approx(var, rel=0.05)
    left = x < -0.25
    assert left.double().mean().item() == pytest.approx(0.3, abs=0.02)
    assert x[left].std().item() == pytest.approx(0.5, rel=0.08)
    assert x[~left].std().item() == pytest.approx(0.3, rel=0.08)


def test_ddim_probability_flow_reproduces_gaussian_mixture_roughly(one_thread):
    weights, means, stds = [0.5, 0.5], [-1.0, 1.0], [0.3, 0.3]
    s = NoiseSchedule.cosine(1000)
    x = sample(_mixture_x0(weights, means, stds, s), (10_000, 1), s, steps=100, dtype=torch.float64,
               generator=torch.Generator().manual_seed(0))[:, 0]  # fmt: skip
    assert x.mean().item() == pytest.approx(0.0, abs=0.05)
    assert x.var().item() == pytest.approx(1.09, rel=0.06)


# ----------------------------------------------------------------------------------------- guidance


def _linear_denoiser(calls: list | None = None):
    def fn(x_t, t, cond):
        if calls is not None:
            calls.append(x_t.shape[0])
        return 0.5 * x_t + cond["c"] + 0.001 * t[:, None].to(x_t.dtype)

    return fn


def test_guidance_scales():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g)
    t = torch.tensor([5, 5, 5, 5])
    cond, uncond = {"c": torch.randn(4, 3, generator=g)}, {"c": torch.randn(1, 3, generator=g)}
    calls: list = []
    fn = _linear_denoiser(calls)
    c, u = fn(x, t, cond), fn(x, t, {"c": uncond["c"].expand(4, 3)})
    calls.clear()
    torch.testing.assert_close(guided_prediction(fn, x, t, cond, uncond, 1.0), c)
    torch.testing.assert_close(guided_prediction(fn, x, t, cond, uncond, 0.0), u)
    assert calls == [4, 4]  # w = 1 and w = 0 need one half only
    torch.testing.assert_close(guided_prediction(fn, x, t, cond, uncond, 3.0), u + 3.0 * (c - u))
    assert calls[-1] == 8  # one forward of 2B
    with pytest.raises(AvitalkError, match="uncond"):
        guided_prediction(fn, x, t, cond, None, 2.0)


def test_sampling_guidance_one_and_zero():
    s = NoiseSchedule.linear(100)
    cond, uncond = {"c": torch.randn(2, 3)}, {"c": torch.zeros(1, 3)}
    fn = _linear_denoiser()

    def run(w, c):
        return sample(fn, (2, 3), s, steps=5, guidance=w, cond=c, uncond=uncond,
                      generator=torch.Generator().manual_seed(4))  # fmt: skip

    assert torch.equal(run(1.0, cond), run(1.0, cond))
    torch.testing.assert_close(run(1.0, cond), sample(fn, (2, 3), s, steps=5, cond=cond,
                                                      generator=torch.Generator().manual_seed(4)))  # fmt: skip
    torch.testing.assert_close(run(0.0, cond), run(1.0, {"c": torch.zeros(2, 3)}))
    assert not torch.allclose(run(2.0, cond), run(1.0, cond))


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 0.7), ("ddpm", 0.0)])
def test_seeded_sampling_is_reproducible(sampler, eta):
    s = NoiseSchedule.cosine(50)
    cond = torch.randn(3, 2)

    def fn(x_t, t, c):
        return torch.tanh(x_t + c)

    def run(seed):
        return sample(fn, (3, 2), s, steps=10, cond=cond, sampler=sampler, eta=eta,
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (3, 2) and a.dtype == torch.float32 and not a.requires_grad


def test_sample_errors():
    s = NoiseSchedule.linear(10)
    with pytest.raises(AvitalkError, match="sampler"):
        sample(lambda x, t, c: x, (1, 1), s, sampler="euler")  # type: ignore[arg-type]
    with pytest.raises(AvitalkError, match="x_T"):
        sample(lambda x, t, c: x, (1, 1), s, x_T=torch.zeros(2, 1))
