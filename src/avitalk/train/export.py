"""Strip a training checkpoint down to what inference needs: ``export_checkpoint(run, dest, dtype)``.

A training checkpoint (:mod:`avitalk.train.checkpoint`) holds the module weights, the optimizer,
scheduler and RNG states. An *exported* checkpoint is a plain directory with only

    meta.json             the training checkpoint's metadata (config, motion space, step, modules),
                          ``states`` emptied, ``files`` updated, plus ``exported`` (source, dtype, time)
    <module>.safetensors  one file per module, floating tensors cast to ``dtype``

so it is loadable by the same loaders as the original (``read_checkpoint`` / ``load_checkpoint`` accept
a checkpoint directory; ``load_stage2(motion_dir, align_dir)`` accepts two exported directories).
This is the layout of the shipped default models under ``avitalk/weights/default/`` (``motion/``,
``align/``, ``instruct/`` and ``MODEL_CARD.md``)::

    export_checkpoint("runs/motion", "src/avitalk/weights/default/motion", dtype=torch.float16)

The copy is assembled in a hidden temporary directory beside ``dest`` and renamed into place at the
end: an error leaves no half-written export, and an earlier export at ``dest`` is replaced only by a
complete one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avitalk.errors import AvitalkError
from avitalk.train.checkpoint import META, Checkpoint, read_checkpoint

#: Modules whose tensors stay float32 whatever ``dtype`` is asked for (standardisation statistics).
KEEP_FLOAT32 = ("stats",)
_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _source(run_or_ckpt: str | os.PathLike[str]) -> Checkpoint:
    path = Path(run_or_ckpt)
    if not path.exists():
        raise AvitalkError(f"{path}: no such run or checkpoint")
    return read_checkpoint(path / "checkpoints" if (path / "checkpoints").is_dir() else path)


def _copy_module(src: Path, dst: Path, dtype: torch.dtype) -> int:
    """Copy one module's safetensors with floating tensors cast to ``dtype``; returns bytes written."""
    with safe_open(str(src), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    out = {k: (t.to(dtype) if _castable(t, dtype) else t).contiguous() for k, t in tensors.items()}
    save_file(out, str(dst), metadata=metadata)
    return dst.stat().st_size


def _castable(t: torch.Tensor, dtype: torch.dtype) -> bool:
    """Cast a floating tensor to ``dtype`` only if every value stays finite there (else it stays as it is)."""
    if not t.is_floating_point() or t.dtype == dtype:
        return False
    return bool(torch.isfinite(t.to(dtype)).all()) or not bool(torch.isfinite(t).all())


def export_checkpoint(
    run_or_ckpt: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float32,
    modules: Sequence[str] | None = None,
) -> Path:
    """Write a stripped, inference-only copy of a checkpoint to the directory ``dest``, atomically.

    Args:
        run_or_ckpt: a run directory (its latest checkpoint), a checkpoint root holding ``latest``,
            a checkpoint directory, or an already exported checkpoint.
        dest: the new directory (created; an existing *exported* checkpoint there is replaced, any
            other existing non-empty directory is an error).
        dtype: ``torch.float32`` or ``torch.float16`` (halves the size; loading casts back to the
            module's dtype). Modules in :data:`KEEP_FLOAT32` stay float32, and so does any tensor with
            values beyond the range of ``dtype`` (float16 overflows above 65504).
        modules: module names to keep (default: all of them).

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        AvitalkError: no checkpoint there, an unknown module name or dtype, an occupied ``dest``.
    """
    if dtype not in _DTYPES:
        raise AvitalkError(f"export dtype must be one of {', '.join(_DTYPES.values())}, got {dtype}")
    ckpt = _source(run_or_ckpt)
    keep = list(ckpt.modules if modules is None else modules)
    unknown = [m for m in keep if m not in ckpt.modules]
    if unknown:
        raise AvitalkError(f"{ckpt.path} has no module {', '.join(unknown)} (it holds {', '.join(ckpt.modules)})")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not _is_export(dest))):
        raise AvitalkError(f"{dest}: exists and is not an exported checkpoint; choose a new directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        files, size = [], 0
        for name in keep:
            target_dtype = torch.float32 if name in KEEP_FLOAT32 else dtype
            size += _copy_module(ckpt.path / f"{name}.safetensors", tmp / f"{name}.safetensors", target_dtype)
            files.append(f"{name}.safetensors")
        meta = dict(ckpt.meta)
        meta.update(
            modules=keep,
            states=[],
            files=[*files, META],
            exported={
                "source": str(ckpt.path.resolve()),
                "dtype": _DTYPES[dtype],
                "bytes": size,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        (tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for p in tmp.iterdir():  # mkdtemp makes an owner-only directory: shipped weights are world-readable
            p.chmod(0o644)
        tmp.chmod(0o755)
        _swap_into_place(tmp, dest)
    finally:
        _remove_flat(tmp)
    return dest


def _is_export(path: Path) -> bool:
    try:
        return "exported" in json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` onto ``dest``; an existing ``dest`` is moved aside first and removed afterwards."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
    old.rmdir()
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        os.rename(old, dest)
        raise
    _remove_flat(old)


def _remove_flat(path: Path) -> None:
    """Remove a flat directory this module created or replaced (plain files only)."""
    if not path.is_dir():
        return
    for p in path.iterdir():
        with contextlib.suppress(OSError):
            p.unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


__all__ = ["KEEP_FLOAT32", "export_checkpoint"]
