"""Typed configuration: dataclass defaults, overridden by a YAML file, then by ``key=value`` flags.

Defaults live in one place, the (frozen, possibly nested) config dataclasses. A recipe resolves its
config with::

    cfg = load_config(MotionRecipeConfig, "my.yaml", ["model.dim=256", "train.max_steps=2000"])
    dump_yaml(cfg, out_dir / "config.yaml")      # the resolved config, beside the outputs

Rules:

- Keys are field names; nested dataclasses are YAML mappings or dotted override keys (``a.b.c=1``).
  A mapping for a nested dataclass changes only the keys it names; the rest keep their defaults.
- Unknown keys are an :class:`~avitalk.errors.AvitalkError` naming the key and the valid ones.
- Values are checked against the field's type annotation: ``bool``, ``int``, ``float``, ``str``,
  ``pathlib.Path``, ``Literal[...]``, ``Enum``, ``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``,
  ``list[X]``, ``dict[str, X]``, nested dataclasses, and ``Any`` (taken as is). An ``int`` is accepted
  where a ``float`` is expected; strings such as ``1e-4`` (which YAML 1.1 reads as a string) are parsed
  for numeric fields. Nothing else is converted implicitly (``dim: "8"`` for an ``int`` is parsed, but
  ``name: 8`` for a ``str`` is an error: quote it).
- Override values are YAML scalars or flow collections (``betas=[0.9,0.99]``, ``extra={a: 1}``,
  ``ckpt=null``). For ``str`` and ``Path`` fields the text after ``=`` is taken literally
  (``name=1e3`` is the string ``"1e3"``); ``null``/``None``/``~`` still mean None where allowed.
- Errors raised by a dataclass's own ``__post_init__`` (``ValueError``/``TypeError``) become one-line
  ``AvitalkError`` messages naming the config section.

:func:`config_to_dict` gives the plain (YAML/JSON-safe) form that checkpoints store, and
:func:`config_from_dict` rebuilds the dataclass from it, so ``config_from_dict(C, config_to_dict(c)) == c``.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_write_text

T = TypeVar("T")

_NULLS = ("null", "none", "~", "")


class _Invalid(Exception):
    """A value does not fit a type (internal; turned into AvitalkError with the key's path)."""


def load_config(
    cls: type[T],
    yaml_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    *,
    base: T | None = None,
) -> T:
    """Build ``cls`` from its defaults (or ``base``), then a YAML file, then ``key=value`` overrides.

    Args:
        cls: a dataclass type (frozen, possibly with nested dataclass fields).
        base: start from this instance instead of the class defaults (e.g. a model preset).
        yaml_path: optional YAML file holding a mapping of (a subset of) the fields.
        overrides: ``"a.b=value"`` strings, applied left to right after the file.

    Raises:
        AvitalkError: unreadable file, unknown key, value of the wrong type, or a failed check in the
            dataclass's ``__post_init__``.
    """
    _require_dataclass(cls)
    data: dict[str, Any] = {}
    if yaml_path is not None:
        data = _read_yaml(Path(yaml_path))
    for item in overrides:
        _apply_override(cls, data, item)
    return config_from_dict(cls, data, base=base)


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, base: T | None = None) -> T:
    """Build ``cls`` from a (possibly partial, nested) mapping, type-checking every value.

    Fields absent from ``data`` keep their defaults, or the values of ``base`` when given.
    """
    _require_dataclass(cls)
    if not isinstance(data, Mapping):
        raise AvitalkError(f"config for {cls.__name__} must be a mapping, got {type(data).__name__}")
    return _build(cls, data, base, "")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The plain form of a config dataclass: nested dicts, lists, str, int, float, bool and None.

    Tuples become lists, ``Path`` becomes ``str`` and ``Enum`` its value, so the result is safe for
    YAML and JSON; :func:`config_from_dict` turns it back into the dataclass.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(cfg)


def dump_yaml(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write a config dataclass (or an already plain mapping) as YAML, atomically; returns the path."""
    data = cfg if isinstance(cfg, Mapping) else config_to_dict(cfg)
    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True))
    return path


def parse_override(item: str) -> tuple[list[str], str]:
    """Split ``"a.b=value"`` into ``(["a", "b"], "value")``; raises AvitalkError when malformed."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise AvitalkError(f"config override {item!r} must look like key=value or section.key=value")
    return key.split("."), raw.strip()


# ---------------------------------------------------------------------------------------------- internals


def _require_dataclass(cls: Any) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"expected a dataclass type, got {cls!r}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AvitalkError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise AvitalkError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AvitalkError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def _fields(cls: type) -> tuple[dict[str, dataclasses.Field], dict[str, Any]]:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    return fields, hints


def _unknown_key(key: str, where: str, cls: type, valid: Sequence[str]) -> AvitalkError:
    full = f"{where}{key}"
    section = f" of {where[:-1]}" if where else ""
    hint = difflib.get_close_matches(key, valid, n=1)
    did_you_mean = f" (did you mean {where}{hint[0]}?)" if hint else ""
    return AvitalkError(
        f"unknown config key {full!r}{did_you_mean}; valid keys{section} ({cls.__name__}): {', '.join(valid)}"
    )


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _build(cls: type[T], data: Mapping[str, Any], base: T | None, where: str) -> T:
    fields, hints = _fields(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise _unknown_key(str(key), where, cls, list(fields))
        current = getattr(base, key) if base is not None else _default_of(fields[key])
        kwargs[key] = _coerce(hints[key], value, f"{where}{key}", current)
    try:
        if base is not None:
            return dataclasses.replace(base, **kwargs)
        missing = [n for n, f in fields.items() if n not in kwargs and _default_of(f) is dataclasses.MISSING]
        if missing:
            raise AvitalkError(f"config {where[:-1] or cls.__name__} needs a value for: {', '.join(missing)}")
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise AvitalkError(f"invalid config {where[:-1] or cls.__name__}: {e}") from None


def _coerce(tp: Any, value: Any, where: str, current: Any = dataclasses.MISSING) -> Any:
    """Check/convert ``value`` for annotation ``tp``; ``current`` is the value it replaces (for merging)."""
    try:
        return _convert(tp, value, where, current)
    except _Invalid as e:
        raise AvitalkError(f"config key {where!r}: {e}") from None


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, where: str, current: Any) -> Any:
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _convert_union(args, value, where, current)
    if origin is typing.Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
            if isinstance(value, str) and not isinstance(choice, str) and str(choice) == value:
                return choice
        raise _Invalid(f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected a mapping of {tp.__name__} fields, got {_describe(value)}")
        base = current if isinstance(current, tp) else None
        return _build(tp, value, base, f"{where}.")
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise _Invalid(f"expected a list, got {_describe(value)}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Invalid(f"expected a list of {len(args)} items, got {len(value)}")
            items = [
                _convert(a, v, f"{where}[{i}]", dataclasses.MISSING)
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            ]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(item_tp, v, f"{where}[{i}]", dataclasses.MISSING) for i, v in enumerate(value)]
        return list(items) if origin is list or tp is list else tuple(items)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected a mapping, got {_describe(value)}")
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _convert(key_tp, k, where, dataclasses.MISSING): _convert(val_tp, v, f"{where}.{k}", dataclasses.MISSING)
            for k, v in value.items()
        }
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if value == member.value or value == member.name:
                return member
        raise _Invalid(f"expected one of {', '.join(repr(m.value) for m in tp)}, got {value!r}")
    return _convert_scalar(tp, value)


def _convert_union(args: tuple[Any, ...], value: Any, where: str, current: Any) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise _Invalid("may not be null")
    non_null = [a for a in args if a is not type(None)]
    if isinstance(value, str) and value.strip().lower() in _NULLS and type(None) in args and str not in non_null:
        return None
    errors = []
    for a in non_null:  # exact type matches first, so int | str keeps "8" a str and 8 an int
        if isinstance(a, type) and not dataclasses.is_dataclass(a) and type(value) is a:
            return value
    for a in non_null:
        try:
            return _convert(a, value, where, current)
        except _Invalid as e:
            errors.append(str(e))
    raise _Invalid(" / ".join(dict.fromkeys(errors)))


def _convert_scalar(tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
            try:
                f = float(value)
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
        raise _Invalid(f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _Invalid(f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid(f"expected a string, got {_describe(value)} (quote it)")
    if isinstance(tp, type) and issubclass(tp, os.PathLike):
        if isinstance(value, str | os.PathLike):
            return Path(value)
        raise _Invalid(f"expected a path, got {_describe(value)}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Invalid(f"unsupported config field type {tp!r} for value {value!r}")


def _leaf_type(cls: type, keys: list[str]) -> Any:
    """The annotation of the field at ``keys``, checking every step of the path (for overrides)."""
    tp: Any = cls
    for depth, key in enumerate(keys):
        target = _dataclass_in(tp)
        where = "".join(f"{k}." for k in keys[:depth])
        if target is None:
            raise AvitalkError(f"config key {where[:-1]!r} is not a section; cannot set {'.'.join(keys)!r}")
        fields, hints = _fields(target)
        if key not in fields:
            raise _unknown_key(key, where, target, list(fields))
        tp = hints[key]
    return tp


def _dataclass_in(tp: Any) -> type | None:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        classes = [a for a in typing.get_args(tp) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        return classes[0] if len(classes) == 1 else None
    return None


def _is_text(tp: Any) -> bool:
    """Fields whose override text is taken literally: str, Path, and Literal of strings."""
    if tp is str or (isinstance(tp, type) and issubclass(tp, Path)):
        return True
    if typing.get_origin(tp) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return len(rest) == 1 and _is_text(rest[0])
    return False


def _apply_override(cls: type, data: dict[str, Any], item: str) -> None:
    keys, raw = parse_override(item)
    tp = _leaf_type(cls, keys)
    if _is_text(tp):
        value: Any = raw
        if raw.lower() in _NULLS and type(None) in typing.get_args(tp):
            value = None
    else:
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            raise AvitalkError(f"config override {item!r}: cannot parse the value {raw!r}") from None
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        return {(k.value if isinstance(k, enum.Enum) else k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
