"""Typed config loading: dataclass defaults <- YAML <- key=value overrides; unknown keys are errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from avitalk.errors import AvitalkError
from avitalk.train.config import config_from_dict, config_to_dict, dump_yaml, load_config
from avitalk.train.engine import TrainConfig


class Kind(enum.Enum):
    A = "a"
    B = "b"


@dataclass(frozen=True)
class Block:
    dim: int = 8
    act: Literal["gelu", "relu"] = "gelu"
    betas: tuple[float, float] = (0.9, 0.999)
    layers: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        if self.dim % 2:
            raise ValueError(f"dim must be even, got {self.dim}")


@dataclass(frozen=True)
class Model:
    block: Block = field(default_factory=lambda: Block(dim=16))
    dropout: float = 0.1
    kind: Kind = Kind.A
    head: Block | None = None


@dataclass(frozen=True)
class Recipe:
    name: str = "run"
    lr: float = 1e-3
    flag: bool = False
    init: Path | None = None
    tags: dict[str, int] = field(default_factory=dict)
    model: Model = field(default_factory=Model)
    train: TrainConfig = field(default_factory=TrainConfig)


def test_defaults_only():
    assert load_config(Recipe) == Recipe()


def test_yaml_then_overrides_nested(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lr: 1e-4\nmodel:\n  block:\n    act: relu\n  dropout: 0\ntrain:\n  max_steps: 50\n")
    cfg = load_config(
        Recipe,
        y,
        ["model.block.betas=[0.8, 0.99]", "train.max_steps=70", "name=1e3", "init=ckpt/x", "flag=true", "tags={a: 1}"],
    )
    assert cfg.lr == 1e-4  # YAML 1.1 reads 1e-4 as a string; the float field parses it
    assert cfg.model.block == Block(dim=16, act="relu", betas=(0.8, 0.99))  # keeps the factory default dim=16
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)
    assert cfg.train.max_steps == 70 and cfg.train.batch_size == TrainConfig().batch_size
    assert cfg.name == "1e3"  # str fields take the override text literally
    assert cfg.init == Path("ckpt/x") and cfg.flag is True and cfg.tags == {"a": 1}
    assert load_config(Recipe, y, ["init=null", "model.kind=b", "train.devices=null"]).model.kind is Kind.B


def test_nested_optional_section_and_tuple_types(tmp_path):
    cfg = load_config(Recipe, None, ["model.head.dim=4", "model.block.layers=[3, 4, 5]"])
    assert cfg.model.head == Block(dim=4)
    assert cfg.model.block.layers == (3, 4, 5)
    assert load_config(Recipe, None, ["model.head={dim: 2}", "model.head=null"]).model.head is None


def test_unknown_keys_name_the_key_and_valid_ones(tmp_path):
    with pytest.raises(AvitalkError) as e:
        load_config(Recipe, None, ["model.block.dimm=4"])
    msg = str(e.value)
    assert "'model.block.dimm'" in msg and "did you mean model.block.dim" in msg and "dim, act, betas, layers" in msg
    y = tmp_path / "c.yaml"
    y.write_text("trian:\n  max_steps: 3\n")
    with pytest.raises(AvitalkError, match=r"unknown config key 'trian'.*valid keys \(Recipe\): name, lr, flag"):
        load_config(Recipe, y)
    with pytest.raises(AvitalkError, match="'lr' is not a section"):
        load_config(Recipe, None, ["lr.x=1"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("model.block.dim=8.5", "model.block.dim.*expected an integer"),
        ("model.block.act=tanh", "model.block.act.*one of 'gelu', 'relu'"),
        ("model.block.betas=[1, 2, 3]", "list of 2 items"),
        ("flag=maybe", "expected true or false"),
        ("model.block.dim=7", "invalid config model.block: dim must be even"),
        ("train.max_steps=0", "invalid config train: max_steps must be >= 1"),
        ("lr", "must look like key=value"),
        ("model.kind=c", "one of 'a', 'b'"),
    ],
)
def test_bad_values_are_one_line_errors(override, pattern):
    with pytest.raises(AvitalkError, match=pattern):
        load_config(Recipe, None, [override])


def test_yaml_type_errors_and_bad_files(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("name: 8\n")
    with pytest.raises(AvitalkError, match=r"'name'.*expected a string, got int 8"):
        load_config(Recipe, y)
    y.write_text("- a\n- b\n")
    with pytest.raises(AvitalkError, match="must hold a mapping"):
        load_config(Recipe, y)
    y.write_text("a: [\n")
    with pytest.raises(AvitalkError, match="not valid YAML"):
        load_config(Recipe, y)
    with pytest.raises(AvitalkError, match="cannot read config file"):
        load_config(Recipe, tmp_path / "missing.yaml")


def test_resolved_config_round_trips_through_yaml_and_dict(tmp_path):
    cfg = load_config(Recipe, None, ["model.head.dim=4", "model.kind=b", "init=a/b", "train.grad_clip=null"])
    path = dump_yaml(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Recipe, path) == cfg
    plain = config_to_dict(cfg)
    assert plain["model"]["block"]["betas"] == [0.9, 0.999] and plain["model"]["kind"] == "b"
    assert config_from_dict(Recipe, plain) == cfg
    assert config_from_dict(Block, {"dim": 4}, base=Block(act="relu")) == Block(dim=4, act="relu")


def test_required_fields_must_be_given():
    @dataclass(frozen=True)
    class Needs:
        path: str
        n: int = 1

    with pytest.raises(AvitalkError, match="needs a value for: path"):
        load_config(Needs)
    assert load_config(Needs, None, ["path=x"]) == Needs("x")
