"""Frozen text encoders behind the :class:`TextEncoder` protocol.

>>> enc = load_text_encoder("minilm")            # doctest: +SKIP
>>> enc.encode(["A man looks slightly sad."]).shape  # doctest: +SKIP
torch.Size([1, 384])
"""

from avitalk.text.base import LRUCache, TextEncoder, TokenFeatures
from avitalk.text.hf import HFTextEncoder, load_clip_encoder, load_hf_encoder
from avitalk.text.load import DEFAULT_TEXT_ENCODER, MINILM_REQUIREMENT, load_text_encoder, minilm_path

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "MINILM_REQUIREMENT",
    "HFTextEncoder",
    "LRUCache",
    "TextEncoder",
    "TokenFeatures",
    "load_clip_encoder",
    "load_hf_encoder",
    "load_text_encoder",
    "minilm_path",
]
