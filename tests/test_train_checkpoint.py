"""Checkpoints: exact resume, strict loading, motion-space checks, atomic saves, no pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from avitalk.errors import AvitalkError, SpaceMismatchError
from avitalk.spaces import ARKIT52, FLAME
from avitalk.train import checkpoint as ck
from avitalk.train.checkpoint import (
    capture_rng_state,
    find_latest,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from avitalk.train.config import config_from_dict


@dataclass(frozen=True)
class NetConfig:
    dim: int = 6
    hidden: int = 16
    dropout: float = 0.2


class Net(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, cfg.dim)
        self.register_buffer("scale", torch.ones(cfg.dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.inp(x)))) * self.scale


def _objects(seed: int = 0):
    torch.manual_seed(seed)
    net = Net(NetConfig())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return net, opt, sched


def _train_step(net, opt, sched) -> torch.Tensor:
    x = torch.randn(8, 6)  # data and dropout masks both come from the global RNG
    loss = ((net(x) - x.flip(1)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.detach()


def _save(tmp_path, net, opt, sched, step, **kw):
    kw.setdefault("config", {"model": {"dim": 6, "hidden": 16, "dropout": 0.2}})
    return save_checkpoint(
        tmp_path, {"model": net}, step=step, space=ARKIT52, states={"optim": opt, "sched": sched}, **kw
    )


def test_resume_gives_bitwise_identical_training(tmp_path):
    net, opt, sched = _objects()
    torch.manual_seed(123)
    continuous = [_train_step(net, opt, sched) for _ in range(6)]

    net2, opt2, sched2 = _objects()
    torch.manual_seed(123)
    first = [_train_step(net2, opt2, sched2) for _ in range(3)]
    path = _save(tmp_path, net2, opt2, sched2, 3)
    torch.manual_seed(999)  # the resumed process starts with other RNG states and fresh objects
    net3, opt3, sched3 = _objects(seed=5)
    ckpt = load_checkpoint(tmp_path, {"model": net3}, {"optim": opt3, "sched": sched3}, expect_space=ARKIT52)
    restore_rng_state(ckpt.rng[0])
    resumed = first + [_train_step(net3, opt3, sched3) for _ in range(3)]

    assert ckpt.path == path and ckpt.step == 3
    assert torch.equal(torch.stack(continuous), torch.stack(resumed))
    for a, b in zip(net.state_dict().values(), net3.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert opt3.param_groups[0]["betas"] == (0.8, 0.95) and sched3.last_epoch == 6
    # the model is rebuilt from the stored config
    assert Net(config_from_dict(NetConfig, ckpt.config["model"])).inp.in_features == 6


def test_layout_has_no_pickle_and_meta_is_complete(tmp_path):
    net, opt, sched = _objects()
    _train_step(net, opt, sched)
    path = _save(tmp_path, net, opt, sched, 1, extra={"note": "x"})
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["meta.json", "model.safetensors", "optim.safetensors", "optim.json", "rng.json"]
    )
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "avitalk-checkpoint" and meta["format_version"] == ck.FORMAT_VERSION
    assert meta["space"]["name"] == "arkit52" and len(meta["space"]["channels"]) == ARKIT52.dim
    assert meta["step"] == 1 and meta["extra"] == {"note": "x"} and meta["avitalk_version"]
    rng = json.loads((path / "rng.json").read_text())[0]
    assert set(rng) >= {"python", "numpy", "torch"}
    assert (tmp_path / "latest").read_text().strip() == "step-000001"
    for p in path.iterdir():  # no pickle protocol header anywhere
        assert not p.read_bytes().startswith(b"\x80")


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    restore_rng_state(json.loads(json.dumps(state)))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a  # noqa: NPY002


def test_strict_loading_lists_missing_unexpected_and_shapes(tmp_path):
    net, opt, sched = _objects()
    _save(tmp_path, net, opt, sched, 1)

    class Bigger(Net):
        def __init__(self) -> None:
            super().__init__(NetConfig())
            self.extra = nn.Linear(2, 2)

    with pytest.raises(AvitalkError, match=r"missing keys: extra.bias, extra.weight") as e:
        load_checkpoint(tmp_path, {"model": Bigger()})
    assert "Bigger" in str(e.value)

    class Smaller(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(6, 16)

    with pytest.raises(AvitalkError, match=r"unexpected keys: out.bias, out.weight"):
        load_checkpoint(tmp_path, {"model": Smaller()})
    with pytest.raises(AvitalkError, match=r"shape mismatch.*inp.weight \(16, 6\) vs \(32, 6\)"):
        load_checkpoint(tmp_path, {"model": Net(NetConfig(hidden=32))})
    with pytest.raises(AvitalkError, match=r"has no ema \(it holds: model, optim, sched\)"):
        load_checkpoint(tmp_path, {"ema": Net(NetConfig())})
    with pytest.raises(AvitalkError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing", {"model": net})


def test_space_mismatch_names_both_spaces(tmp_path):
    net, opt, sched = _objects()
    _save(tmp_path, net, opt, sched, 1)
    with pytest.raises(SpaceMismatchError, match=r"arkit52@v1 \(55 channels\).*flame@v1 \(53 channels\)"):
        load_checkpoint(tmp_path, {"model": Net(NetConfig())}, expect_space=FLAME)
    save_checkpoint(tmp_path / "nospace", {"model": net}, step=1)
    with pytest.raises(AvitalkError, match="stores no motion space"):
        load_checkpoint(tmp_path / "nospace", {"model": net}, expect_space=ARKIT52)


def test_failed_save_leaves_previous_checkpoint_and_latest(tmp_path, monkeypatch):
    net, opt, sched = _objects()
    first = _save(tmp_path, net, opt, sched, 1)
    _train_step(net, opt, sched)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "_flatten", boom)  # fails after model.safetensors was written
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, net, opt, sched, 2)
    monkeypatch.undo()

    assert find_latest(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000001"]
    fresh = Net(NetConfig())
    load_checkpoint(tmp_path, {"model": fresh})
    # a save killed outright leaves a hidden temporary, cleaned up by the next save
    (tmp_path / ".tmp-step-000002-abc").mkdir()
    (tmp_path / ".tmp-step-000002-abc" / "model.safetensors").write_bytes(b"partial")
    _save(tmp_path, net, opt, sched, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000001", "step-000002"]


def test_keep_last_prunes_and_resaving_a_step_replaces_it(tmp_path):
    net, opt, sched = _objects()
    for step in range(1, 5):
        _save(tmp_path, net, opt, sched, step, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    (tmp_path / "step-000003" / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match="did not write"):
        _save(tmp_path, net, opt, sched, 5, keep_last=2)
    assert (tmp_path / "step-000003" / "notes.txt").exists()
    _save(tmp_path, net, opt, sched, 5, keep_last=None, extra={"again": True})
    assert read_checkpoint(tmp_path).extra == {"again": True}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_tied_weights_and_newer_format(tmp_path):
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.emb.weight

    a, b = Tied(), Tied()
    save_checkpoint(tmp_path, {"lm": a}, step=0)
    load_checkpoint(tmp_path, {"lm": b})
    assert torch.equal(b.head.weight, a.emb.weight) and b.head.weight is b.emb.weight
    meta_path = tmp_path / "step-000000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = ck.FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AvitalkError, match="upgrade"):
        read_checkpoint(tmp_path)
