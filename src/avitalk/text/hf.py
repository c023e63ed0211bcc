"""Hugging Face ``transformers`` text encoders (BERT-like with mean/CLS pooling, CLIP text tower).

``transformers`` is imported only when an encoder is loaded, so ``import avitalk.text`` stays cheap.
Nothing here reaches a hub: every load is ``local_files_only=True`` from a directory on disk.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from avitalk.errors import AvitalkError
from avitalk.text.base import LRUCache, TokenFeatures, check_texts

Pooling = Literal["mean", "cls", "pooler", "projected"]
POOLINGS: tuple[str, ...] = ("mean", "cls", "pooler", "projected")


class HFTextEncoder:
    """A frozen ``transformers`` text model + tokenizer behind the :class:`~avitalk.text.TextEncoder` protocol.

    Args:
        model: a ``PreTrainedModel`` whose forward returns ``last_hidden_state`` (and ``pooler_output``
            or ``text_embeds`` for those poolings). It is frozen here: ``requires_grad_(False)``, ``eval()``.
        tokenizer: the matching tokenizer.
        name: identifier of the encoder (``"minilm"``, ``"clip:/path"``, ...).
        pooling: ``"mean"`` masked mean of the last hidden states (sentence-transformers' mean pooling),
            ``"cls"`` the first token, ``"pooler"`` the model's ``pooler_output`` (CLIP: the EOS token
            after the final layer norm), ``"projected"`` the model's ``text_embeds`` (CLIP with projection).
        normalize: L2-normalise pooled embeddings (as sentence-transformers' ``Normalize`` and CLIP do).
        max_length: tokens per text after truncation (special tokens included).
        batch_size: texts per forward pass.
        cache_size: pooled embeddings kept in an LRU cache keyed by text (0 disables it).

    The encoder holds no device of its own: inputs go to wherever the model's parameters are, and
    outputs come back on that device. Move it with :meth:`to`.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        name: str,
        pooling: Pooling = "mean",
        normalize: bool = True,
        max_length: int = 256,
        batch_size: int = 64,
        cache_size: int = 8192,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.cache = LRUCache(cache_size)
        cfg = getattr(model.config, "text_config", model.config)
        self.token_dim: int = int(cfg.hidden_size)
        """Width of :meth:`encode_tokens` features (differs from ``dim`` only for ``"projected"``)."""
        self.dim: int = int(model.config.projection_dim) if pooling == "projected" else self.token_dim

    def __repr__(self) -> str:
        return (
            f"HFTextEncoder(name={self.name!r}, dim={self.dim}, pooling={self.pooling!r}, normalize={self.normalize})"
        )

    @property
    def device(self) -> torch.device:
        """Where the model's parameters (and therefore the outputs) are."""
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> HFTextEncoder:
        """Move the model to ``device`` (clears the cache, whose tensors live on the old device)."""
        self.model.to(device)
        self.cache.clear()
        return self

    # ---------------------------------------------------------------------------------------- encoding

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _pool(self, out: Any, mask: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` pooled embedding from a model output and the ``(B, L)`` attention mask."""
        if self.pooling == "mean":
            h = out.last_hidden_state.float()  # (B, L, D)
            m = mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, D)
        elif self.pooling == "cls":
            pooled = out.last_hidden_state[:, 0].float()  # (B, D)
        elif self.pooling == "pooler":
            pooled = out.pooler_output.float()  # (B, D)
        else:
            pooled = out.text_embeds.float()  # (B, P)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            enc = self._tokenize(texts)
            pooled = self._pool(self.model(**enc), enc["attention_mask"])  # (B, dim)
        return pooled.clone()  # outside inference mode: an ordinary tensor, usable by autograd

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled sentence embeddings ``(N, dim)`` float32 in input order (unit norm if ``normalize``).

        Texts are de-duplicated, looked up in the cache, and the rest encoded in batches of similar
        length (less padding). Texts longer than ``max_length`` tokens are truncated.
        """
        texts = check_texts(texts)
        found: dict[str, torch.Tensor] = {}
        todo: list[str] = []
        for t in dict.fromkeys(texts):
            row = self.cache.get(t)
            if row is None:
                todo.append(t)
            else:
                found[t] = row
        todo.sort(key=len)
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i : i + self.batch_size]
            for t, row in zip(batch, self._encode_batch(batch).unbind(0), strict=True):
                found[t] = row
                self.cache.put(t, row)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack([found[t] for t in texts])  # (N, dim)

    def encode_tokens(self, texts: Sequence[str]) -> TokenFeatures:
        """Last hidden states ``(N, L, token_dim)`` float32 and mask ``(N, L)`` bool (not cached).

        ``L`` is the longest tokenised text (capped at ``max_length``); padded positions hold the
        model's output at pad tokens and must be ignored through the mask.
        """
        texts = check_texts(texts)
        if not texts:
            return TokenFeatures(
                torch.zeros(0, 0, self.token_dim, device=self.device), torch.zeros(0, 0, dtype=torch.bool)
            )
        with torch.inference_mode():
            enc = self._tokenize(texts)
            feats = []
            for i in range(0, len(texts), self.batch_size):
                chunk = {k: v[i : i + self.batch_size] for k, v in enc.items()}
                feats.append(self.model(**chunk).last_hidden_state.float())  # (b, L, token_dim)
            features = torch.cat(feats)  # (N, L, token_dim)
            mask = enc["attention_mask"].bool()  # (N, L)
        return TokenFeatures(features.clone(), mask.clone())


# -------------------------------------------------------------------------------------------- loading


@contextlib.contextmanager
def quiet_transformers() -> Iterator[Any]:
    """Import ``transformers`` and silence its load progress bars and info logs for the block."""
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise AvitalkError(f"this model needs the 'transformers' package (pip install transformers): {e}") from None
    bar = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield transformers
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _check_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not str(path).strip():
        raise AvitalkError(f"{what}: no model directory given")
    if not p.is_dir():
        raise AvitalkError(f"{what}: model directory {p} does not exist")
    if not (p / "config.json").is_file():
        raise AvitalkError(f"{what}: {p} is not a Hugging Face model directory (no config.json)")
    return p


def _sentence_transformers_settings(path: Path) -> tuple[Pooling | None, int | None]:
    """Pooling mode and ``max_seq_length`` from a sentence-transformers directory, if it is one."""
    pooling: Pooling | None = None
    max_len: int | None = None
    try:
        modules = json.loads((path / "modules.json").read_text())
        for m in modules:
            if str(m.get("type", "")).endswith("Pooling"):
                cfg = json.loads((path / m.get("path", "") / "config.json").read_text())
                if cfg.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif cfg.get("pooling_mode_mean_tokens"):
                    pooling = "mean"
                else:
                    modes = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
                    raise AvitalkError(f"text encoder {path}: unsupported sentence-transformers pooling {modes}")
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    try:
        max_len = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return pooling, max_len


def _max_length(tokenizer: Any, config: Any, preferred: int | None) -> int:
    cfg = getattr(config, "text_config", config)
    limit = int(getattr(cfg, "max_position_embeddings", 512) or 512)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < limit:
        limit = tok_max
    return min(preferred, limit) if preferred else limit


def load_hf_encoder(
    path: str | Path, *, name: str, device: torch.device | str = "cpu", native: bool = True, **kwargs: Any
) -> HFTextEncoder:
    """A BERT-like encoder from a local directory.

    A plain BERT (all-MiniLM-L6-v2, the default) runs on :mod:`avitalk.text.bert` with a
    :class:`~avitalk.text.tokenizer.FastTokenizer` (no ``transformers`` import, same numbers); other
    architectures, or ``native=False``, load through ``AutoModel`` + ``AutoTokenizer``.

    Pooling is mean pooling unless the directory is a sentence-transformers model whose pooling
    config says CLS; ``max_length`` comes from ``sentence_bert_config.json`` when present.
    Embeddings are L2-normalised.
    """
    p = _check_dir(path, f"text encoder {name!r}")
    pooling, max_len = _sentence_transformers_settings(p)
    if native and _native_bert_dir(p):
        from avitalk.text.bert import load_native_bert
        from avitalk.text.tokenizer import FastTokenizer

        tokenizer, model = FastTokenizer(p), load_native_bert(p)
    else:
        tokenizer, model = _load_auto(p, name)
    kwargs.setdefault("pooling", pooling or "mean")
    kwargs.setdefault("max_length", _max_length(tokenizer, model.config, max_len))
    return HFTextEncoder(model.to(device), tokenizer, name=name, **kwargs)


def _native_bert_dir(p: Path) -> bool:
    """A plain BERT with ``tokenizer.json`` and ``model.safetensors`` (what :mod:`avitalk.text.bert` runs)."""
    from avitalk.text.bert import native_bert_supported

    if not all((p / f).is_file() for f in ("config.json", "tokenizer.json", "model.safetensors")):
        return False
    try:
        return native_bert_supported(json.loads((p / "config.json").read_text()))
    except (OSError, ValueError):
        return False


def _load_auto(p: Path, name: str) -> tuple[Any, Any]:
    """``AutoTokenizer`` + ``AutoModel`` from a local directory."""
    with quiet_transformers() as tf:
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(p, local_files_only=True)
            model = tf.AutoModel.from_pretrained(p, local_files_only=True)
        except Exception as e:  # transformers raises OSError/ValueError/KeyError... for bad directories
            raise AvitalkError(f"cannot load text encoder {name!r} from {p}: {_one_line(e)}") from None
    return tokenizer, model


def load_clip_encoder(
    path: str | Path, *, name: str, device: torch.device | str = "cpu", **kwargs: Any
) -> HFTextEncoder:
    """The CLIP text tower from a local directory.

    A full CLIP checkpoint (``model_type`` ``"clip"``) or a saved ``CLIPTextModelWithProjection``
    gives the projected ``text_embeds`` (``dim`` = ``projection_dim``, what CLIP compares with images);
    a bare ``CLIPTextModel`` gives its ``pooler_output`` (the EOS token, ``dim`` = ``hidden_size``).
    Embeddings are L2-normalised; at most 77 tokens (the position table) per text.
    """
    p = _check_dir(path, f"text encoder {name!r}")
    with quiet_transformers() as tf:
        try:
            config = tf.AutoConfig.from_pretrained(p, local_files_only=True)
            archs = tuple(getattr(config, "architectures", None) or ())
            if config.model_type == "clip" or "CLIPTextModelWithProjection" in archs:
                cls, pooling = tf.CLIPTextModelWithProjection, "projected"
            elif config.model_type == "clip_text_model":
                cls, pooling = tf.CLIPTextModel, "pooler"
            else:
                raise AvitalkError(f"text encoder {name!r}: {p} holds a {config.model_type!r} model, not CLIP")
            if config.model_type == "clip":  # full CLIP: the text tower with the model-level projection width
                config = config.text_config
                config.projection_dim = tf.AutoConfig.from_pretrained(p, local_files_only=True).projection_dim
            tokenizer = tf.AutoTokenizer.from_pretrained(p, local_files_only=True)
            model = cls.from_pretrained(p, config=config, local_files_only=True)
        except AvitalkError:
            raise
        except Exception as e:
            raise AvitalkError(f"cannot load text encoder {name!r} from {p}: {_one_line(e)}") from None
    kwargs.setdefault("pooling", pooling)
    kwargs.setdefault("max_length", _max_length(tokenizer, model.config, None))
    return HFTextEncoder(model.to(device), tokenizer, name=name, **kwargs)
