"""A Hugging Face ``tokenizer.json`` run by the ``tokenizers`` library alone, without ``transformers``.

Why not ``transformers.AutoTokenizer``: importing ``transformers`` (and the ``torch._dynamo`` it pulls
in) takes about 3.5 s on 2 CPU cores, a quarter of the 15 s budget of a fresh ``avitalk animate``
(issue #7). A "fast" Hugging Face tokenizer *is* a ``tokenizers.Tokenizer`` built from
``tokenizer.json``; this wrapper adds what ``transformers`` reads from ``tokenizer_config.json`` /
``special_tokens_map.json`` (the special tokens, ``model_max_length``) and the calling conventions our
code uses (``tok(texts, padding=True, truncation=True, max_length=..., return_tensors="pt")``,
``batch_decode``). Token ids are the same as ``AutoTokenizer``'s (tests/test_native_backends.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from avitalk.errors import AvitalkError

__all__ = ["FastTokenizer"]

_SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token", "cls_token", "sep_token")


def _token_text(value: Any) -> str | None:
    """A special token from a tokenizer config: a string or an ``{"content": ...}`` dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class FastTokenizer:
    """``tokenizer.json`` + special tokens of a Hugging Face model directory.

    Attributes:
        bos_token_id, eos_token_id, pad_token_id, unk_token_id: special ids (``None`` when the
            directory defines no such token); ``pad_token_id`` falls back to EOS like :class:`CausalLM`.
        model_max_length: the configured maximum sequence length (very large when unset).
    """

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        p = Path(path)
        file = p / "tokenizer.json"
        if not file.is_file():
            raise AvitalkError(f"{p}: no tokenizer.json")
        self._tok = Tokenizer.from_file(str(file))
        self._tok.no_padding()
        self._tok.no_truncation()
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins, as in transformers
            if (p / name).is_file():
                config.update(json.loads((p / name).read_text()))
        ids: dict[str, int | None] = {}
        for key in _SPECIAL:
            text = _token_text(config.get(key))
            ids[key] = self._tok.token_to_id(text) if text is not None else None
        self.bos_token_id = ids["bos_token"]
        self.eos_token_id = ids["eos_token"] if ids["eos_token"] is not None else ids["sep_token"]
        self.pad_token_id = ids["pad_token"] if ids["pad_token"] is not None else self.eos_token_id
        self.unk_token_id = ids["unk_token"]
        self.model_max_length = int(config.get("model_max_length") or 10**30)
        self._clean_up_spaces = bool(config.get("clean_up_tokenization_spaces", False))

    def __len__(self) -> int:
        """Vocabulary size including added tokens (``len()`` of a ``transformers`` tokenizer)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of one text."""
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def __call__(
        self,
        texts: str | Sequence[str],
        *,
        add_special_tokens: bool = True,
        padding: bool = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """Encode like a ``transformers`` tokenizer: ``input_ids``, ``attention_mask``, ``token_type_ids``.

        One text gives flat lists; a list of texts gives lists of lists, or with ``return_tensors="pt"``
        ``(N, L)`` int64 tensors (``padding=True`` pads on the right to the longest text with
        ``pad_token_id``). ``truncation`` keeps the first ``max_length`` ids, special tokens included.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if truncation and max_length is not None:
            self._tok.enable_truncation(max_length)
        try:
            encs = self._tok.encode_batch(batch, add_special_tokens=add_special_tokens)
        finally:
            self._tok.no_truncation()
        out: dict[str, list[list[int]]] = {
            "input_ids": [list(e.ids) for e in encs],
            "token_type_ids": [list(e.type_ids) for e in encs],
            "attention_mask": [[1] * len(e.ids) for e in encs],
        }
        if padding:
            longest = max((len(r) for r in out["input_ids"]), default=0)
            fill = {"input_ids": int(self.pad_token_id or 0), "token_type_ids": 0, "attention_mask": 0}
            for key, rows in out.items():
                out[key] = [r + [fill[key]] * (longest - len(r)) for r in rows]
        if return_tensors == "pt":
            return {k: torch.tensor(v, dtype=torch.long).reshape(len(batch), -1) for k, v in out.items()}
        if return_tensors is not None:
            raise ValueError(f"return_tensors must be None or 'pt', got {return_tensors!r}")
        return {k: v[0] for k, v in out.items()} if single else dict(out)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of token ids."""
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return _clean_up(text) if self._clean_up_spaces else text

    def batch_decode(self, rows: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        """Texts of a batch of token-id rows."""
        if isinstance(rows, torch.Tensor):
            rows = rows.tolist()
        return [self.decode(r, skip_special_tokens=skip_special_tokens) for r in rows]


def _clean_up(text: str) -> str:
    """``transformers``' ``clean_up_tokenization``: no space before punctuation and English contractions."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):  # fmt: skip
        text = text.replace(a, b)
    return text
