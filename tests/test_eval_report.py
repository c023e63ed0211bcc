"""``avitalk eval report``: Markdown tables and PNG plots from small hand-made evaluation JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from avitalk.cli import main

EMOTIONS = ("neutral", "happy", "angry")


def _group(n, bleu1, emo, inten):
    return {
        "n": n,
        "metrics": {"BLEU-1": bleu1, "BLEU-4": 0.2345, "ROUGE-L": 0.5678, "CIDEr": 1.4321},
        "metrics_unavailable": {"METEOR": "not requested", "SPICE": "absent: no CoreNLP jars"},
        "emotion_accuracy": emo,
        "intensity_accuracy": inten,
        "n_emotion": n,
        "n_intensity": n - 1,
        "unparsed": 1,
        "intensity_schemes": ["MEAD 1-3"],
    }


def stage1_doc():
    full = _group(6, 0.7412, 0.8333, 0.6)
    full |= {
        "confusion": {
            "neutral": {"neutral": 2, "happy": 0, "angry": 0, "none": 0},
            "happy": {"neutral": 0, "happy": 2, "angry": 0, "none": 0},
            "angry": {"neutral": 0, "happy": 0, "angry": 1, "none": 1},
        },
        "per_source": {"synth": _group(4, 0.7811, 1.0, 0.6667), "ravdess": _group(2, 0.6791, 0.5, 0.5)},
        "seconds_per_clip": 0.4123,
        "decoding": {"decoding": "greedy"},
        "texts": [],
    }
    nollm = _group(6, 0.5644, 0.3333, 0.4) | {"per_source": {}, "seconds_per_clip": 0.2, "confusion": {}}
    return {
        "split": "test",
        "corpora": ["corpus"],
        "models": {"full": full, "no-llm": nollm},
        "paper_table3": {"label": "paper (MeadText, different data)", "metrics": {"BLEU-1": 0.474, "SPICE": 0.409}},
        "comparison": {
            "no-llm": {
                "all": {
                    "text_wins": ["BLEU-1", "ROUGE-L"],
                    "text_compared": ["BLEU-1", "ROUGE-L"],
                    "emotion_win": True,
                    "beats": True,
                }
            }
        },
        "targets": {
            "synth emotion accuracy": {"value": 1.0, "minimum": 0.8, "met": True},
            "ravdess emotion accuracy": {"value": 0.5, "minimum": 0.55, "met": False},
        },
    }


def _row(name, lve, div_z):
    return {"name": name, "clips": 8, "samples": 10, "lve": lve, "fdd": -0.0123, "mve": 1.2345,
            "lip_closure": 0.9123, "emotion_own": 0.875, "emotion_swap": 0.75, "lve_swap": lve * 1.1,
            "lve_rise": 0.1, "diversity_z": div_z, "diversity_vertex": 0.4321, "jitter": 0.0123,
            "closure_threshold": 1.5, "seconds": 3.0, "per_clip": []}  # fmt: skip


def stage2_doc():
    rows = [_row("full", 1.2345, 0.9876), _row("no-diffusion", 1.5432, 0.0), _row("regression", 1.3456, 0.0)]
    rows.append(_row("mean face", 4.5678, None) | {"emotion_swap": None, "lve_rise": None})
    return {
        "corpus": "corpus", "split": "test", "face": "builtin", "clips": 8, "samples": 10,
        "classifier": {"test_accuracy": 0.9531, "test_clips": 64},
        "teacher": {"classifier_accuracy": 0.9876, "lip_closure": 0.9612, "jitter": 0.0111,
                    "closure": {"threshold": 1.4567}},
        "load_seconds": 1.0, "rows": rows,
    }  # fmt: skip


def bench_doc():
    stages = [
        {"key": "encode", "label": "speech encoding", "seconds": 0.5432, "rtf": 0.05432},
        {"key": "describe", "label": "stage 1 describe", "seconds": None, "rtf": None, "note": "no stage 1"},
        {"key": "mp4", "label": "export render.mp4", "seconds": 2.3456, "rtf": 0.23456},
    ]
    return {"kind": "avitalk-bench", "machine": {"cpus": 2, "threads": 2}, "models": "m",
            "audio": {"source": "synthetic", "seconds": 10.0}, "repeats": 1, "stages": stages,
            "load": [{"label": "stage 2", "first": 1.5, "again": 0.25}],
            "animate": {"seconds": 3.21, "rtf": 0.321, "first_call_seconds": 4.5, "described": False}}  # fmt: skip


def _png_ok(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        assert len(np.unique(np.asarray(im.convert("L")))) >= 2  # something is drawn


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_full_report_tables_and_plots(tmp_path, capsys):
    s1 = _write(tmp_path, "eval1.json", stage1_doc())
    s2 = _write(tmp_path, "eval2.json", stage2_doc())
    b = _write(tmp_path, "bench.json", bench_doc())
    figs = {"title": "bench/bench_streaming.py", "figures": [
        {"figure": "first motion frame (ms)", "measured": "12.345", "target": "<= 300", "pass": True},
        {"figure": "sustained RTF", "measured": "1.234", "target": "< 1", "pass": False}]}  # fmt: skip
    bs = _write(tmp_path, "streaming.json", figs)
    tsne = tmp_path / "tsne.png"
    img = Image.new("RGB", (200, 150), "white")
    img.paste((200, 30, 30), (20, 20, 60, 60))
    img.save(tsne)  # picked up beside --stage1
    out = tmp_path / "report"
    argv = ["eval", "report", "--stage1", str(s1), "--stage2", str(s2), "--bench", str(b), "--bench", str(bs)]
    assert main([*argv, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    # stage 1: text metrics x100, accuracies %, the paper row labelled as different data, per source
    for s in ("74.1", "23.4", "56.8", "143.2", "83.3%", "60.0%", "78.1", "67.9", "56.4", "0.41"):
        assert s in md, s
    assert "paper (MeadText, different data)" in md and "47.4" in md and "40.9" in md
    assert "**different data**" in md
    assert "absent: no CoreNLP jars" in md
    assert "full vs no-llm" in md and "beats" in md and "**not met**" in md
    assert "| angry | 0 | 0 | 1 | 1 | 2 |" in md  # confusion row incl. the 'none' column and total
    assert "![t-SNE" in md and (out / "tsne.png").is_file()
    # stage 2: Table 4 layout (baselines, ablations, ours), numbers as given, n/a as a dash
    for s in ("1.234", "1.543", "1.346", "4.568", "-0.012", "91.2%", "87.5%", "+10.0%", "0.988", "0.432", "0.0123"):
        assert s in md, s
    lines = md.split("## Stage 2")[1].splitlines()
    order = [next(i for i, line in enumerate(lines) if f"| {n} |" in line) for n in
             ("mean face", "regression", "no-diffusion", "full")]  # fmt: skip
    assert order == sorted(order)
    assert "*teacher motion*" in md and "96.1%" in md and "95.3%" in md and "1.46 mm" in md
    # speed: per stage, loads, figures with PASS / FAIL
    assert "0.543" in md and "0.0543" in md and "2.346" in md and "no stage 1" in md and "3.21 s" in md
    assert "12.345" in md and "PASS" in md and "**FAIL**" in md
    assert "not measured" not in md.split("## Stage 1")[1]  # every section had an input
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["speed.png", "stage1_confusion.png", "stage1_metrics.png", "stage2_metrics.png", "tsne.png"]
    for p in pngs:
        _png_ok(out / p)
        assert f"]({p})" in md
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    printed = capsys.readouterr().out
    assert str(out / "report.md") in printed


def test_missing_sections_are_marked_not_measured(tmp_path):
    s2 = _write(tmp_path, "eval2.json", {"eval": stage2_doc(), "figures": [
        {"figure": "LVE full / mean face", "measured": "0.270", "target": "<= 0.5", "pass": True}]})  # fmt: skip
    out = tmp_path / "r"
    assert main(["eval", "report", "--stage2", str(s2), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    s1, rest = md.split("## Stage 2")
    assert "Stage 1: not measured" in s1 and "t-SNE" in s1 and "not measured" in s1
    assert "Speed: not measured" in rest
    assert "0.270" in rest and "1.234" in rest  # bench_stage2.py document: figures + the eval under 'eval'
    assert sorted(p.name for p in out.glob("*.png")) == ["stage2_metrics.png"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stage1", "{missing}"], "no such file"),
        (["--stage1", "{bad}"], "not JSON"),
        (["--stage1", "{s2}"], "not an `avitalk eval instruct --out` report"),
        (["--stage2", "{s1}"], "not an `avitalk eval motion --out` report"),
        (["--bench", "{s1}"], "not an `avitalk bench --out`"),
        (["--stage2", "{s2}", "--tsne", "{bad}"], "not a PNG"),
        (["--stage2", "{s2}", "--tsne", "{missing}"], "no such file"),
        ([], "nothing to report"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, argv, message):
    paths = {"missing": tmp_path / "nope.json", "bad": tmp_path / "bad.txt"}
    paths |= {"s1": _write(tmp_path, "s1.json", stage1_doc()), "s2": _write(tmp_path, "s2.json", stage2_doc())}
    paths["bad"].write_text("{not json")
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    assert main(["eval", "report", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avitalk: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out" / "report.md").exists()


def test_out_is_a_file(tmp_path, capsys):
    s2 = _write(tmp_path, "s2.json", stage2_doc())
    (tmp_path / "f").write_text("x")
    assert main(["eval", "report", "--stage2", str(s2), "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err
