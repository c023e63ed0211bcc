"""Audio input/output and (later) speech-encoder backends."""

from avitalk.audio.io import load_audio, save_audio, to_mono_16k

__all__ = ["load_audio", "save_audio", "to_mono_16k"]
