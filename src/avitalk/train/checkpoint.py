"""Resumable checkpoints: safetensors weights + JSON metadata, written atomically, loaded strictly.

A checkpoint is a directory ``<ckpt_dir>/step-000123/``::

    meta.json             format, format_version, avitalk/torch versions, step, config, motion space,
                          module and state names, extra (all JSON)
    <module>.safetensors  one file per trainable module (its ``state_dict``; tied tensors stored once)
    optim.safetensors     every tensor of the optimizer / scheduler / grad-scaler state dicts
    optim.json            the rest of those state dicts, with tensors replaced by references
    rng.json              per-rank RNG states (python, numpy, torch, cuda) as lists of ints

No pickle anywhere: tensors live in safetensors, everything else is JSON. ``<ckpt_dir>/latest`` is a
one-line text file naming the newest complete checkpoint. A checkpoint is assembled in a hidden
temporary directory and renamed into place, and ``latest`` is replaced atomically afterwards, so a
crash or an exception mid-save leaves the previous checkpoint and ``latest`` untouched.

To rebuild a model for inference::

    ckpt = read_checkpoint("runs/motion/checkpoints")           # follows `latest`; reads metadata only
    model = Generator(config_from_dict(GeneratorConfig, ckpt.config["model"]))
    load_checkpoint(ckpt.path, {"model": model}, expect_space=ARKIT52)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from avitalk import __version__
from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_write_text
from avitalk.spaces import space_from_json
from avitalk.train.config import config_to_dict
from avitalk.types import MotionSpace

FORMAT = "avitalk-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest"
META = "meta.json"
OPTIM_TENSORS = "optim.safetensors"
OPTIM_JSON = "optim.json"
RNG = "rng.json"

_STEP_DIR = re.compile(r"^step-(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_RESERVED = {"meta", "optim", "rng"}
_MAX_LISTED = 12


class Stateful(Protocol):
    """Anything with ``state_dict()`` / ``load_state_dict()`` (optimizers, LR schedulers, grad scalers)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint's ``meta.json`` (and ``rng.json``) says.

    Attributes:
        path: the checkpoint directory (``.../step-000123``).
        step: optimizer steps taken when it was saved.
        config: the resolved config as a plain dict (see :func:`avitalk.train.config.config_from_dict`).
        space: the motion space the model was trained in, or None for space-free models.
        modules: names of the module weight files (``<name>.safetensors``).
        states: names of the optimizer/scheduler/scaler states held in ``optim.*``.
        extra: the recipe's own JSON metadata.
        rng: per-rank RNG states (index = rank), or an empty tuple.
        meta: the whole of ``meta.json``.
    """

    path: Path
    step: int
    config: dict[str, Any]
    space: MotionSpace | None
    modules: tuple[str, ...]
    states: tuple[str, ...]
    extra: dict[str, Any]
    rng: tuple[dict[str, Any], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


def step_dir_name(step: int) -> str:
    """``step-000123``: the directory name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step:06d}"


# ----------------------------------------------------------------------------------------------- saving


def save_checkpoint(
    ckpt_dir: str | os.PathLike[str],
    modules: Mapping[str, nn.Module],
    *,
    step: int,
    config: Any = None,
    space: MotionSpace | None = None,
    states: Mapping[str, Stateful | Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
    rng_states: Sequence[Mapping[str, Any]] | None = None,
    keep_last: int | None = 3,
) -> Path:
    """Write ``<ckpt_dir>/step-<step>/`` atomically, point ``latest`` at it and prune old ones.

    Args:
        ckpt_dir: the run's checkpoint directory (created if needed).
        modules: name -> module whose ``state_dict`` is saved as ``<name>.safetensors``. DDP and
            ``torch.compile`` wrappers are unwrapped. Frozen backbones should not be passed.
        step: optimizer steps taken so far.
        config: the resolved config (a dataclass or a plain mapping); stored as JSON.
        space: the motion space the model works in (None for models without one).
        states: name -> optimizer / LR scheduler / grad scaler (or an already computed state dict).
        extra: JSON-serialisable metadata of the recipe's own.
        rng_states: one RNG state per rank (from :func:`capture_rng_state`); None stores this
            process's state only.
        keep_last: keep this many newest ``step-*`` checkpoints (the new one included); None keeps all.

    Returns:
        The checkpoint directory.

    Raises:
        ValueError: a bad module/state name or a non-JSON ``extra``/``config``.
        TypeError: a state dict holds something that is neither a tensor nor plain data.
    """
    ckpt_dir = Path(ckpt_dir)
    names = list(modules) + list(states or {})
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"checkpoint entry name {name!r} must match {_NAME.pattern}")
    for name in modules:
        if name in _RESERVED:
            raise ValueError(f"module name {name!r} is reserved ({', '.join(sorted(_RESERVED))})")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate checkpoint entry names in {names}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    config_dict = _config_dict(config)
    extra_dict = dict(extra or {})
    for what, obj in (("config", config_dict), ("extra", extra_dict)):
        try:
            json.dumps(obj)
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint {what} must be plain JSON data: {e}") from None
    rng = [dict(r) for r in rng_states] if rng_states is not None else [capture_rng_state()]

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(ckpt_dir)
    final = ckpt_dir / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=ckpt_dir))
    try:
        files = []
        for name, module in modules.items():
            _save_module(unwrap_module(module), tmp / f"{name}.safetensors")
            files.append(f"{name}.safetensors")
        if states:
            tensors: dict[str, torch.Tensor] = {}
            tree = {
                name: _flatten(s if isinstance(s, Mapping) else s.state_dict(), name, tensors)
                for name, s in states.items()
            }
            save_file(tensors, str(tmp / OPTIM_TENSORS), metadata={"format": "pt"})
            (tmp / OPTIM_JSON).write_text(json.dumps(tree), encoding="utf-8")
            files += [OPTIM_TENSORS, OPTIM_JSON]
        (tmp / RNG).write_text(json.dumps(rng), encoding="utf-8")
        files.append(RNG)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "avitalk_version": __version__,
            "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "step": int(step),
            "config_type": _qualname(config),
            "config": config_dict,
            "space": space.to_json() if space is not None else None,
            "modules": list(modules),
            "states": list(states or {}),
            "world_size": len(rng),
            "files": [*files, META],
            "extra": extra_dict,
        }
        (tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")  # written last
        _replace_dir(tmp, final)
    except BaseException:
        _remove_flat_dir(tmp)
        raise
    atomic_write_text(ckpt_dir / LATEST, final.name + "\n")
    if keep_last is not None:
        prune_checkpoints(ckpt_dir, keep_last)
    return final


def prune_checkpoints(ckpt_dir: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest ``step-*`` checkpoints (never the one ``latest`` names).

    Only the files a checkpoint's ``meta.json`` lists are deleted; a directory that also holds other
    files is left in place with a warning. Returns the removed directories.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    ckpt_dir = Path(ckpt_dir)
    latest = find_latest(ckpt_dir)
    removed = []
    for _, path in list_checkpoints(ckpt_dir)[:-keep_last]:
        if latest is not None and path.resolve() == latest.resolve():
            continue
        try:
            listed = json.loads((path / META).read_text(encoding="utf-8")).get("files", [])
        except (OSError, ValueError):
            continue  # not a complete checkpoint of ours: leave it alone
        for name in listed:
            if "/" not in name and name not in (".", ".."):
                with contextlib.suppress(FileNotFoundError):
                    (path / name).unlink()
        try:
            path.rmdir()
            removed.append(path)
        except OSError:
            warnings.warn(f"old checkpoint {path} holds files avitalk did not write; left in place", stacklevel=2)
    return removed


# ---------------------------------------------------------------------------------------------- loading


def list_checkpoints(ckpt_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete ``step-*`` checkpoint in ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / META).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_latest(ckpt_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint ``<ckpt_dir>/latest`` names, or None when there is none yet.

    Raises:
        AvitalkError: ``latest`` names a checkpoint that does not exist.
    """
    pointer = Path(ckpt_dir) / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    path = Path(ckpt_dir) / name
    if not _STEP_DIR.match(name) or not (path / META).is_file():
        raise AvitalkError(f"{pointer} names {name!r}, which is not a complete checkpoint")
    return path


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint directory from either itself or a checkpoint root holding ``latest``."""
    path = Path(path)
    if (path / META).is_file():
        return path
    latest = find_latest(path)
    if latest is None:
        raise AvitalkError(f"no checkpoint at {path} (neither {META} nor a {LATEST} pointer)")
    return latest


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint's metadata (no weights); ``path`` is a checkpoint or a directory with ``latest``.

    Raises:
        AvitalkError: not an avitalk checkpoint, written by a newer format version, or unreadable.
    """
    path = resolve_checkpoint(path)
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AvitalkError(f"cannot read {path / META}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AvitalkError(f"{path} is not an avitalk checkpoint (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise AvitalkError(
            f"checkpoint {path} has format version {version!r}; this avitalk reads up to {FORMAT_VERSION} (upgrade)"
        )
    space = space_from_json(meta["space"]) if meta.get("space") is not None else None
    rng: tuple[dict[str, Any], ...] = ()
    if (path / RNG).is_file():
        rng = tuple(json.loads((path / RNG).read_text(encoding="utf-8")))
    return Checkpoint(
        path=path,
        step=int(meta["step"]),
        config=meta.get("config") or {},
        space=space,
        modules=tuple(meta.get("modules", ())),
        states=tuple(meta.get("states", ())),
        extra=meta.get("extra") or {},
        rng=rng,
        meta=meta,
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    modules: Mapping[str, nn.Module],
    states: Mapping[str, Stateful] | None = None,
    *,
    strict: bool = True,
    expect_space: MotionSpace | None = None,
) -> Checkpoint:
    """Load weights (and optionally optimizer/scheduler states) from a checkpoint into live objects.

    Every name in ``modules`` and ``states`` must be in the checkpoint; the checkpoint may hold more
    (inference loads only the generator of a training checkpoint). RNG states are returned, not
    applied (see :func:`restore_rng_state`).

    Args:
        path: a checkpoint directory or a checkpoint root holding ``latest``.
        modules: name -> module to load ``<name>.safetensors`` into (wrappers are unwrapped).
        states: name -> object with ``load_state_dict`` (optimizer, LR scheduler, grad scaler).
        strict: missing or unexpected parameter names are an error (the default; keep it).
        expect_space: the motion space the caller works in; a different stored space is an error.

    Raises:
        SpaceMismatchError: the checkpoint's motion space differs from ``expect_space`` (names both).
        AvitalkError: missing entries, missing/unexpected parameter names or shape mismatches (listed).
    """
    ckpt = read_checkpoint(path)
    if expect_space is not None:
        if ckpt.space is None:
            raise AvitalkError(f"checkpoint {ckpt.path} stores no motion space but {expect_space.key} was expected")
        expect_space.require_same(ckpt.space, f"checkpoint {ckpt.path}")
    absent = [n for n in modules if n not in ckpt.modules] + [n for n in states or {} if n not in ckpt.states]
    if absent:
        have = ", ".join([*ckpt.modules, *ckpt.states]) or "nothing"
        raise AvitalkError(f"checkpoint {ckpt.path} has no {', '.join(absent)} (it holds: {have})")
    for name, module in modules.items():
        _load_module(unwrap_module(module), ckpt.path / f"{name}.safetensors", strict=strict)
    if states:
        tree = json.loads((ckpt.path / OPTIM_JSON).read_text(encoding="utf-8"))
        with safe_open(str(ckpt.path / OPTIM_TENSORS), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        for name, obj in states.items():
            try:
                obj.load_state_dict(_unflatten(tree[name], tensors))
            except (KeyError, ValueError, RuntimeError) as e:
                raise AvitalkError(f"checkpoint {ckpt.path}: cannot load state {name!r}: {e}") from None
    return ckpt


# -------------------------------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy (legacy global) and torch (CPU, and CUDA if initialised) RNG states."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # noqa: NPY002 (the global stream is what we save)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set this process's RNGs from :func:`capture_rng_state` output (CUDA only if present in both)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np_state = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    np.random.set_state(np_state)  # noqa: NPY002
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])


# ------------------------------------------------------------------------------------------- internals


def unwrap_module(module: nn.Module) -> nn.Module:
    """The module inside DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel | nn.DataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def _storage_key(t: torch.Tensor) -> tuple[Any, ...] | None:
    if t.numel() == 0 or t.device.type == "meta":
        return None
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _save_module(module: nn.Module, path: Path) -> None:
    """Save a state dict; tensors tied under several names are stored once (aliases in the metadata)."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    storages: set[tuple[Any, int]] = set()
    for name, t in module.state_dict().items():
        key = _storage_key(t)
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        t = t.detach()
        storage = (t.device, t.untyped_storage().data_ptr()) if t.numel() else None
        if storage is not None and storage in storages:
            t = t.clone()  # a different view of storage already saved: safetensors forbids sharing
        if key is not None:
            seen[key] = name
        if storage is not None:
            storages.add(storage)
        tensors[name] = t.to("cpu").contiguous()
    save_file(tensors, str(path), metadata={"format": "pt", "avitalk_aliases": json.dumps(aliases)})


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def _load_module(module: nn.Module, path: Path, *, strict: bool) -> None:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    for alias, source in json.loads(metadata.get("avitalk_aliases", "{}")).items():
        if source in state:
            state[alias] = state[source]
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        raise AvitalkError(f"{path} does not match {type(module).__name__}: {'; '.join(parts)}")
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if wrong:
        raise AvitalkError(
            f"{path} does not match {type(module).__name__}: shape mismatch (file vs model): {_listing(wrong)}"
        )
    if not strict:
        state = {k: v for k, v in state.items() if k in expected}
    module.load_state_dict(state, strict=strict)


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON tree of ``obj`` whose tensors move to ``tensors`` under dotted path names."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()  # a copy: no storage shared
        return {"__tensor__": path}
    if isinstance(obj, Mapping):
        items = [(k, _flatten(v, f"{path}.{k}", tensors)) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
            return dict(items)
        for k, _ in items:
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise TypeError(f"cannot store a {type(k).__name__} dict key at {path} in a checkpoint")
        return {"__dict__": [[k, v] for k, v in items]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {path} in a checkpoint (tensors and plain data only)")


def _unflatten(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__tuple__"}:
            return tuple(_unflatten(v, tensors) for v in tree["__tuple__"])
        if set(tree) == {"__dict__"}:
            return {k: _unflatten(v, tensors) for k, v in tree["__dict__"]}
        return {k: _unflatten(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unflatten(v, tensors) for v in tree]
    return tree


def _config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    return config_to_dict(config)


def _qualname(config: Any) -> str | None:
    if config is None or isinstance(config, Mapping):
        return None
    return f"{type(config).__module__}.{type(config).__qualname__}"


def _remove_flat_dir(path: Path) -> None:
    """Remove a directory this module created (it holds only plain files)."""
    if not path.exists():
        return
    for p in path.iterdir():
        with contextlib.suppress(OSError):
            p.unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


def _remove_stale_temporaries(ckpt_dir: Path) -> None:
    """Clean up after a save that was killed (temporaries are ours: hidden ``.tmp-step-*``/``.old-step-*``)."""
    for p in ckpt_dir.iterdir():
        if p.is_dir() and (p.name.startswith(".tmp-step-") or p.name.startswith(".old-step-")):
            _remove_flat_dir(p)


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``; an existing ``dst`` (same step saved again) is swapped out first."""
    if not dst.exists():
        os.rename(src, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".old-{dst.name}-", dir=dst.parent))
    old.rmdir()
    os.rename(dst, old)
    try:
        os.rename(src, dst)
    except OSError:
        os.rename(old, dst)
        raise
    _remove_flat_dir(old)
