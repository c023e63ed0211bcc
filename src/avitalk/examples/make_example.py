"""Regenerate the bundled example clip ``hello.flac`` with avitalk's own synthetic-speech code.

    python -m avitalk.examples.make_example [--out PATH]

The sentence (:data:`avitalk.examples.TEXT`) was written for this project. It is spoken by the corpus speaker ``spk14``
(festival's CMU ARCTIC "slt" HTS voice, female US English; licences in ``README.md``) with the table
prosody of a fairly happy voice (:func:`avitalk.data.synth.prosody.table_prosody`), through the same
pipeline as the synthetic corpus (:func:`avitalk.data.synth.speech.synthesize`: 16 kHz, loudness
normalised), and written as 16-bit mono FLAC. Synthesis is deterministic for a given festival build and
seed, so running this again reproduces the clip (up to festival version differences).

Needs festival with the slt voice: ``apt-get install festival festvox-us-slt-hts``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf

from avitalk.examples import EXAMPLE, TEXT

SPEAKER = "spk14"
EMOTION, INTENSITY = "happy", 2
SEED = 7
OUT = Path(__file__).with_name(EXAMPLE)


def make_example(out: str | Path = OUT) -> Path:
    """Synthesise :data:`TEXT` and write it to ``out`` (FLAC, 16 kHz mono, 16 bit); returns ``out``."""
    from avitalk.data.synth.prosody import table_prosody
    from avitalk.data.synth.speech import synthesize
    from avitalk.data.synth.voices import speaker

    utt = synthesize(TEXT, speaker(SPEAKER), table_prosody(EMOTION, INTENSITY), seed=SEED)
    out = Path(out)
    sf.write(str(out), utt.samples, utt.sample_rate, format="FLAC", subtype="PCM_16")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    args = p.parse_args(argv)
    path = make_example(args.out)
    info = sf.info(str(path))
    print(f"wrote {path}: {info.duration:.2f} s, {info.samplerate} Hz, {info.channels} ch, {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
