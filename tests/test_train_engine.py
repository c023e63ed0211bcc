"""The shared training loop: exact resume, sharded data, TensorBoard, and two-process CPU DDP (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from avitalk.errors import AvitalkError
from avitalk.spaces import ARKIT52
from avitalk.train.checkpoint import read_checkpoint
from avitalk.train.engine import (
    ShardedSampler,
    TrainConfig,
    Trainer,
    add_train_arguments,
    launch_command,
    maybe_relaunch,
    train_overrides,
)

pytest.importorskip("accelerate")
pytest.importorskip("tensorboardX")

# A tiny regression recipe, run in-process here and under torchrun by the two-process test.
RECIPE = textwrap.dedent(
    """
    import json, sys
    from dataclasses import dataclass, field

    import torch
    from torch import nn

    from avitalk.spaces import ARKIT52
    from avitalk.train.config import load_config
    from avitalk.train.engine import TrainConfig, Trainer


    @dataclass(frozen=True)
    class Recipe:
        lr: float = 0.05
        dropout: float = 0.0
        train: TrainConfig = field(default_factory=lambda: TrainConfig(
            max_steps=6, batch_size=4, ckpt_every=3, log_every=2, progress=False, grad_clip=0.5))


    class Data(torch.utils.data.Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(7)
            self.x = torch.randn(37, 5, generator=g)
            self.y = self.x @ torch.randn(5, 3, generator=g) + 0.1 * torch.randn(37, 3, generator=g)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "y": self.y[i]}


    def run(out, overrides=()):
        cfg = load_config(Recipe, None, list(overrides))
        trainer = Trainer(cfg.train, out, config=cfg, space=ARKIT52)
        model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(cfg.dropout), nn.Linear(16, 3))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
        model, opt, sched = trainer.prepare(model=model, optim=opt, sched=sched)
        losses = []

        def step(batch):
            loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
            losses.append(loss.detach())
            return loss, {"mae": (model(batch["x"]) - batch["y"]).abs().mean()}

        data = Data()

        def evaluate():
            pred = model(data.x.to(trainer.device))
            return {"mse": nn.functional.mse_loss(pred, data.y.to(trainer.device))}

        trainer.fit(step, trainer.dataloader(data), eval_fn=evaluate)
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        return trainer, params, torch.stack(losses) if losses else torch.empty(0)


    if __name__ == "__main__":
        trainer, params, _ = run(sys.argv[1], sys.argv[2:])
        with open(f"{sys.argv[1]}/params-rank{trainer.rank}.json", "w") as f:
            json.dump({"world": trainer.world_size, "params": params.tolist()}, f)
    """
)


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """The recipe module above, importable."""
    (tmp_path / "recipe_mod").mkdir()
    script = tmp_path / "recipe_mod" / "tiny_recipe.py"
    script.write_text(RECIPE)
    monkeypatch.syspath_prepend(str(script.parent))
    import importlib

    module = importlib.import_module("tiny_recipe")
    yield module
    sys.modules.pop("tiny_recipe", None)


def test_resume_in_fit_is_bitwise_identical(recipe, tmp_path, capsys):
    overrides = ["dropout=0.3", "train.batch_size=5"]  # 37 samples: 7 batches per epoch, so step 9 crosses one
    _, full, losses = recipe.run(tmp_path / "a", [*overrides, "train.max_steps=9", "train.ckpt_every=4"])
    recipe.run(tmp_path / "b", [*overrides, "train.max_steps=4", "train.ckpt_every=4"])
    capsys.readouterr()
    _, resumed, later = recipe.run(tmp_path / "b", [*overrides, "train.max_steps=9", "train.ckpt_every=4"])
    assert "avitalk: resuming with a changed config: train.max_steps" in capsys.readouterr().err
    assert torch.equal(full, resumed)
    assert torch.equal(losses[4:], later)
    ckpt = read_checkpoint(tmp_path / "b" / "checkpoints")
    assert ckpt.step == 9 and ckpt.space == ARKIT52 and ckpt.config["train"]["max_steps"] == 9
    assert [p.name for p in sorted((tmp_path / "b" / "checkpoints").glob("step-*"))] == [
        "step-000004",
        "step-000008",
        "step-000009",
    ]
    assert (tmp_path / "b" / "config.yaml").read_text().startswith("lr: 0.05")
    events = list((tmp_path / "a" / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    # a finished run resumed again does nothing
    _, again, none = recipe.run(tmp_path / "a", [*overrides, "train.max_steps=9", "train.ckpt_every=4"])
    assert torch.equal(again, full) and none.numel() == 0


def test_gradient_accumulation_matches_the_larger_batch(recipe, tmp_path):
    # 37 samples, 8 per step: 4 steps per epoch, so 6 steps cross an epoch boundary
    _, accumulated, _ = recipe.run(tmp_path / "acc", ["train.batch_size=4", "train.grad_accum=2"])
    _, single, _ = recipe.run(tmp_path / "one", ["train.batch_size=8"])
    torch.testing.assert_close(accumulated, single, rtol=1e-5, atol=1e-6)


def test_tensorboard_scalars_are_readable(recipe, tmp_path):
    recipe.run(tmp_path, ["train.max_steps=4"])
    from tensorboardX.event_file_writer import EventFileWriter  # noqa: F401 (the writer package is present)
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in (tmp_path / "tb").glob("events.out.tfevents.*"):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
            n = int.from_bytes(data[pos : pos + 8], "little")
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            tags |= {(v.tag, event.step) for v in event.summary.value}
            pos += 12 + n + 4
    assert {("loss", 2), ("loss", 4), ("mae", 4), ("grad_norm", 4), ("lr", 4), ("val/mse", 4)} <= tags
    with pytest.raises(AvitalkError, match="holds checkpoints of an earlier run"):
        recipe.run(tmp_path, ["train.max_steps=4", "train.resume=false"])


def test_two_cpu_processes_match_one_process_with_the_global_batch(recipe, tmp_path):
    """torchrun, 2 CPU processes (gloo), 4 samples each: stop at step 3, resume to 6 in a second launch."""
    ddp_out = tmp_path / "ddp"
    ddp_out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path / "recipe_mod")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(tmp_path / "recipe_mod" / "tiny_recipe.py"), str(ddp_out), "train.devices=2"]
    for max_steps in (3, 6):
        proc = subprocess.run(
            [*cmd, f"train.max_steps={max_steps}"], env=env, capture_output=True, text=True, timeout=240, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"resumed from {ddp_out / 'checkpoints' / 'step-000003'}" in proc.stderr or max_steps == 3
    ranks = [json.loads((ddp_out / f"params-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["params"] == ranks[1]["params"]  # bitwise equal on both ranks
    _, single, _ = recipe.run(tmp_path / "single", ["train.batch_size=8"])  # same global batch, one process
    torch.testing.assert_close(torch.tensor(ranks[0]["params"]), single, rtol=1e-5, atol=1e-6)
    ckpt = read_checkpoint(ddp_out / "checkpoints")
    assert ckpt.step == 6 and len(ckpt.rng) == 2 and ckpt.extra["world_size"] == 2
    assert ckpt.rng[0]["torch"] != ckpt.rng[1]["torch"]  # each rank's own random stream is kept
    assert list((ddp_out / "tb").glob("events.out.tfevents.*"))


def test_shared_command_line_flags():
    import argparse

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--out", "runs/x", "model.dim=8", "--devices", "2", "--max-steps", "5", "--no-resume"])
    assert args.out == Path("runs/x")
    assert train_overrides(args) == ["model.dim=8", "train.devices=2", "train.max_steps=5", "train.resume=false"]


def test_sharded_sampler_union_is_the_single_process_batch():
    one = list(ShardedSampler(37, batch_size=8, num_replicas=1, seed=3))
    shards = [list(ShardedSampler(37, batch_size=4, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert len(one) == 32 and all(len(s) == 16 for s in shards)
    for k in range(4):
        assert sorted(one[8 * k : 8 * k + 8]) == sorted(shards[0][4 * k : 4 * k + 4] + shards[1][4 * k : 4 * k + 4])
    s = ShardedSampler(37, batch_size=4, num_replicas=2, rank=1, seed=3)
    s.set_epoch(0, skip_batches=2)
    assert list(s) == shards[1][8:] and len(s) == 16
    s.set_epoch(1)
    assert list(s) != shards[1]
    padded = [
        list(ShardedSampler(5, batch_size=2, num_replicas=2, rank=r, drop_last=False, shuffle=False)) for r in (0, 1)
    ]
    assert padded == [[0, 2, 4], [1, 3, 0]]


def test_launch_checks(monkeypatch):
    cfg = TrainConfig(devices=2)
    assert launch_command(cfg, ["train", "motion"])[-5:] == ["--nproc_per_node=2", "-m", "avitalk", "train", "motion"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert maybe_relaunch(cfg, []) is None  # already inside a launcher
    monkeypatch.delenv("LOCAL_RANK")
    assert maybe_relaunch(TrainConfig(), []) is None
    with pytest.raises(AvitalkError, match="every node"):
        maybe_relaunch(TrainConfig(devices=2, num_nodes=2), [])
    with pytest.raises(AvitalkError, match=r"train\.devices=2 but 1 process"):
        Trainer(cfg, "unused")


def test_fp16_on_cpu_is_a_user_error(tmp_path):
    with pytest.raises(AvitalkError, match="fp16 needs a GPU"):
        Trainer(TrainConfig(precision="fp16", accelerator="cpu"), Path(tmp_path))
