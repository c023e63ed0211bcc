"""Time-varying instructions: parsing, validation, cross-fade weights, per-frame styles in the generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avitalk.errors import AvitalkError
from avitalk.motion.timeline import Segment, Timeline, load_instruction_file, parse_instruction, parse_time


def test_parse_timed_string_plain_text_and_round_trip():
    t = parse_instruction("0-3s: calm and neutral; 3s-: increasingly angry, brows lowered")
    assert t.segments == (Segment(0, 3, "calm and neutral"), Segment(3, None, "increasingly angry, brows lowered"))
    assert parse_instruction(t.format()) == t
    plain = parse_instruction("speak happily; smile a lot")  # ';' without a time range is just text
    assert plain.constant and plain.segments == (Segment(0, None, "speak happily; smile a lot"),)
    assert plain.format() == "speak happily; smile a lot"
    t = parse_instruction("0-1.5s: a; b ; 1500ms-1m: c; 1m-: d")
    assert [(s.start, s.end, s.text) for s in t.segments] == [(0, 1.5, "a; b"), (1.5, 60, "c"), (60, None, "d")]
    assert [parse_time(x) for x in ("3", "3s", "2.5s", "250ms", "1m20s", ".5")] == [3, 3, 2.5, 0.25, 80, 0.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1-3s: x; 3s-: y", "must start at 0"),
        ("0-3s: x; 2s-: y", "overlaps segment 1"),
        ("0-3s: x; 4s-: y", "gap between 3s and 4s"),
        ("0-: x; 3s-: y", "open-ended but is not the last"),
        ("0-3s: ; 3s-: y", "has no text"),
        ("0-3s: x; 5s-3s: y", "ends before it starts"),
        ("0-3x: hello", "bad time range"),
        ("0-3s: x; 3sec-: y", "bad time range"),
        ("   ", "empty instruction"),
    ],
)
def test_bad_instructions_are_clear_errors(text, message):
    with pytest.raises(AvitalkError, match=message) as e:
        parse_instruction(text)
    assert "\n" not in str(e.value)


def test_json_and_yaml_files(tmp_path):
    data = [{"start": 0, "end": "2s", "text": "calm"}, {"start": 2, "end": None, "text": "angry"}]
    (tmp_path / "a.json").write_text(json.dumps({"segments": data}))
    (tmp_path / "a.yaml").write_text("- start: 0\n  end: 2\n  text: calm\n- start: 2\n  text: angry\n")
    (tmp_path / "a.txt").write_text("0-2s: calm; 2s-: angry\n")
    parsed = [parse_instruction(load_instruction_file(tmp_path / f"a.{s}")) for s in ("json", "yaml", "txt")]
    assert parsed[0] == parsed[1] == parsed[2] == parse_instruction("0-2s: calm; 2s-: angry")
    (tmp_path / "bad.json").write_text('[{"start": 0, "txt": "x"}]')
    with pytest.raises(AvitalkError, match="unknown keys txt"):
        load_instruction_file(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(AvitalkError, match="invalid YAML"):
        load_instruction_file(tmp_path / "bad.yaml")
    with pytest.raises(AvitalkError, match="no such instruction file"):
        load_instruction_file(tmp_path / "none.json")


def test_weights_are_a_smooth_partition_of_unity():
    t = parse_instruction("0-2s: a; 2-2.2s: b; 2.2s-: c")
    w = t.weights(100, 25.0, blend=0.5)
    assert w.shape == (100, 3) and np.allclose(w.sum(1), 1) and (w >= 0).all()
    assert w[0, 0] == 1 and w[-1, 2] == 1  # exact outside the cross-fades
    # the short middle segment (0.2 s) narrows the fades around it to 0.1 s either side of 2 s and 2.2 s
    first = w[:, 0]
    assert first[46] == 1 and 0 < first[49] < 1 and first[53] == 0 and np.all(np.diff(first) <= 1e-12)
    # two long segments: the full 0.5 s raised-cosine fade, frames 44..55, no jumps
    w2 = parse_instruction("0-2s: a; 2s-: b").weights(100, 25.0, blend=0.5)[:, 1]
    assert w2[43] == 0 and 0 < w2[44] < w2[55] < 1 and w2[56] == 1 and np.abs(np.diff(w2)).max() < 0.13
    hard = t.weights(100, 25.0, blend=0.0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    # any frame range gives the same rows (streaming asks for windows of frames)
    assert np.array_equal(t.weights(np.arange(40, 60), 25.0), w[40:60])


def test_style_frames_copies_constant_frames_and_renormalises_mixes():
    t = parse_instruction("0-1s: a; 1s-: b")
    z = torch.nn.functional.layer_norm(torch.randn(2, 2, 16), (16,))  # (N, K, Dz) standardised
    f = t.style_frames(z, 50, 25.0)
    assert f.shape == (2, 50, 16)
    assert torch.equal(f[:, 0], z[:, 0]) and torch.equal(f[:, -1], z[:, 1])
    mid = f[:, 25]
    assert torch.allclose(mid.std(-1, unbiased=False), torch.ones(2), atol=1e-5)
    assert Timeline((Segment(0, None, "x"),)).constant


def test_generator_per_frame_style_equals_constant_style():
    from avitalk.motion.config import Stage2Config
    from avitalk.motion.model import build_stage2

    torch.manual_seed(0)
    cfg = Stage2Config.tiny()
    gen = build_stage2(cfg).generator.eval()
    for block in gen.blocks:  # FiLM is zero-initialised: give it weights so the per-frame path is exercised
        torch.nn.init.normal_(block.film.weight, std=0.05)
    content = torch.randn(3, 20, cfg.content_dim)
    z = torch.randn(3, cfg.style_dim)
    with torch.no_grad():
        const = gen(content, z)
        per_frame = gen(content, z[:, None].expand(-1, 20, -1))
        assert torch.allclose(const, per_frame, atol=1e-6)
        z2 = torch.randn(3, cfg.style_dim)
        mixed = torch.cat([z[:, None].expand(-1, 10, -1), z2[:, None].expand(-1, 10, -1)], dim=1)
        out = gen(content, mixed)
        assert not torch.allclose(out, const, atol=1e-3)
        with pytest.raises(ValueError, match="z of shape"):
            gen(content, torch.randn(3, 19, cfg.style_dim))


def test_windowed_generate_with_per_frame_style_matches_constant():
    from avitalk.motion.config import Stage2Config
    from avitalk.motion.inference import Stage2Synthesizer
    from avitalk.motion.model import build_stage2
    from avitalk.spaces import get_space

    torch.manual_seed(1)
    cfg = Stage2Config.tiny()
    parts = build_stage2(cfg)
    synth = Stage2Synthesizer(
        config=cfg,
        space=get_space(cfg.space),
        generator=parts.generator,
        aligner=parts.aligner,
        prior=parts.denoiser,
        mean=torch.zeros(cfg.motion_dim),
        std=torch.ones(cfg.motion_dim),
        speech_encoder=None,  # type: ignore[arg-type]  (generate() needs neither encoder)
        text_encoder=None,  # type: ignore[arg-type]
        max_batch=3,
    )
    t = 3 * cfg.window + 7
    content = torch.randn(t, cfg.content_dim)
    z = torch.randn(2, cfg.style_dim)
    a = synth.generate(content, z)
    b = synth.generate(content, z[:, None].expand(-1, t, -1).contiguous())
    assert a.shape == (2, t, cfg.motion_dim) and torch.allclose(a, b, atol=1e-6)
