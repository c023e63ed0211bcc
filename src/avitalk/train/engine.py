"""The shared training loop: a thin layer over Hugging Face Accelerate.

Accelerate sets up the process group (NCCL on GPUs, gloo on CPUs), picks the device, wraps models in
DistributedDataParallel, runs mixed precision and gradient accumulation; avitalk adds what every recipe
needs on top: a typed :class:`TrainConfig`, a sharded sampler whose data position is exactly
resumable, strict safetensors checkpoints with the motion space (:mod:`avitalk.train.checkpoint`),
a progress bar on the main process and TensorBoard scalars. A recipe is then one screen::

    cfg = load_config(RecipeConfig, args.config, train_overrides(args))   # flags: add_train_arguments
    if (status := maybe_relaunch(cfg.train, sys.argv[1:])) is not None:   # --devices N on one machine
        return status
    trainer = Trainer(cfg.train, args.out, config=cfg, space=ARKIT52)
    model = Generator(cfg.model)                                     # built on the CPU, no device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model, opt = trainer.prepare(model=model, optim=opt)             # device, DDP; checkpointed by name
    loader = trainer.dataloader(dataset)

    def step(batch):                                                 # batch is on trainer.device
        loss = F.mse_loss(model(batch["x"]), batch["y"])
        return loss, {"mse": loss}

    trainer.fit(step, loader)                                        # resumes from `latest` if present

Processes are started by a launcher, never by the trainer: ``torchrun`` or ``accelerate launch`` (see
docs/training.md), or :func:`maybe_relaunch` for one machine. ``TrainConfig.devices``/``num_nodes``
say what the run expects and are checked against what the launcher started.

``batch_size`` is per process: the global batch is ``batch_size * world_size`` (times ``grad_accum``).
With :meth:`Trainer.dataloader` the samples of a global batch are the same whatever the world size,
so N processes with batch B see exactly the batches one process with batch N*B sees.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from avitalk.errors import AvitalkError
from avitalk.train.checkpoint import (
    capture_rng_state,
    find_latest,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_module,
)
from avitalk.train.config import config_to_dict, dump_yaml
from avitalk.types import MotionSpace

StepOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, torch.Tensor | float]]
"""What a step function returns: the loss, or ``(loss, {name: scalar to log})``."""

_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass(frozen=True)
class TrainConfig:
    """Settings every recipe shares; recipes embed it as their ``train`` section.

    Attributes:
        max_steps: optimizer steps to train for (a resumed run continues up to this number).
        batch_size: samples per process per micro-batch; the global batch is ``batch_size *
            world_size * grad_accum``.
        grad_accum: micro-batches accumulated per optimizer step.
        grad_clip: clip the global gradient norm to this value; None disables clipping.
        seed: seeds model init (process ``r`` uses ``seed + r``) and the data order (shared by all).
        num_workers: DataLoader worker processes per training process.
        log_every: log averaged scalars every N steps (and at the last step).
        eval_every: run the recipe's ``eval_fn`` every N steps (None: only at the last step).
        ckpt_every: save a checkpoint every N steps (and at the last step).
        keep_last: keep the N newest checkpoints.
        resume: continue from ``<out>/checkpoints/latest`` when it exists.
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + grad scaling, GPUs only).
        accelerator: ``auto`` (GPU if available), ``cpu`` or ``gpu``.
        devices: processes per node the run expects; None accepts what the launcher started.
        num_nodes: nodes the run expects.
        strategy: ``ddp`` (data parallel; the only strategy wired up so far).
        find_unused_parameters: let DDP handle parameters that get no gradient in some steps (e.g. a
            condition branch dropped for classifier-free guidance); costs a graph walk per step.
        progress: show a progress bar on the main process.
        tensorboard: write TensorBoard scalars to ``<out>/tb``.
    """

    max_steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    grad_clip: float | None = 1.0
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    eval_every: int | None = None
    ckpt_every: int = 500
    keep_last: int = 3
    resume: bool = True
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | None = None
    num_nodes: int = 1
    strategy: Literal["ddp"] = "ddp"
    find_unused_parameters: bool = False
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "log_every", "ckpt_every", "keep_last", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 or null, got {self.eval_every}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.devices is not None and self.devices < 1:
            raise ValueError(f"devices must be >= 1 or null, got {self.devices}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip}")


# ------------------------------------------------------------------------------------------- launching


def launched_world() -> tuple[int, int]:
    """``(processes per node, nodes)`` as started by torchrun / accelerate launch; ``(1, 1)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return local, max(1, world // max(1, local))


def launch_command(cfg: TrainConfig, argv: Sequence[str], module: str = "avitalk") -> list[str]:
    """The ``torchrun`` command that starts ``python -m <module> <argv>`` on ``cfg.devices`` local processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={cfg.devices or 1}",
        "-m",
        module,
        *argv,
    ]


def maybe_relaunch(cfg: TrainConfig, argv: Sequence[str], module: str = "avitalk") -> int | None:
    """On one node, start ``cfg.devices`` processes with torchrun unless already inside a launcher.

    Returns the launcher's exit status, or None when the caller should simply train in this process.
    Multi-node runs must be started by ``torchrun`` on every node (docs/training.md).
    """
    if "LOCAL_RANK" in os.environ or ((cfg.devices or 1) == 1 and cfg.num_nodes == 1):
        return None
    if cfg.num_nodes > 1:
        raise AvitalkError(
            f"train.num_nodes={cfg.num_nodes}: start the command on every node with torchrun "
            "(--nnodes, --node_rank, --rdzv_endpoint); see docs/training.md"
        )
    # the children report their own errors; their exit status is ours (no traceback for a failed run)
    return subprocess.run(launch_command(cfg, argv, module), check=False).returncode


def add_train_arguments(parser: argparse.ArgumentParser, *, section: str = "train") -> None:
    """Add the flags every ``avitalk train <stage>`` command shares to ``parser``.

    ``--config FILE``, ``KEY=VALUE ...`` overrides, ``--out DIR``, and ``--devices/--num-nodes/--strategy/
    --max-steps/--no-resume`` as shorthands for ``<section>.devices=...`` etc. (see :func:`train_overrides`).
    """
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.dim=256")
    parser.add_argument("--config", type=Path, help="YAML file of config values (applied before KEY=VALUE)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (config, checkpoints, tb)")
    parser.add_argument("--devices", type=int, help=f"processes per node (= {section}.devices)")
    parser.add_argument("--num-nodes", type=int, help=f"number of nodes (= {section}.num_nodes)")
    parser.add_argument("--strategy", help=f"distributed strategy (= {section}.strategy)")
    parser.add_argument("--max-steps", type=int, help=f"optimizer steps (= {section}.max_steps)")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in --out")


def train_overrides(args: argparse.Namespace, *, section: str = "train") -> list[str]:
    """The override list for :func:`~avitalk.train.config.load_config` from :func:`add_train_arguments` flags."""
    out = list(args.overrides)
    for flag, key in (("devices", "devices"), ("num_nodes", "num_nodes"), ("strategy", "strategy")):
        if getattr(args, flag) is not None:
            out.append(f"{section}.{key}={getattr(args, flag)}")
    if args.max_steps is not None:
        out.append(f"{section}.max_steps={args.max_steps}")
    if args.no_resume:
        out.append(f"{section}.resume=false")
    return out


def setup(cfg: TrainConfig) -> tuple[Any, torch.device]:
    """Create the ``accelerate.Accelerator`` for ``cfg`` and seed this process; returns it and its device.

    Raises:
        AvitalkError: GPUs requested but absent, fp16 on CPU, or a launch that does not match
            ``devices``/``num_nodes``.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    local, nodes = launched_world()
    if cfg.devices is not None and cfg.devices != local:
        raise AvitalkError(
            f"train.devices={cfg.devices} but {local} process(es) per node were started; launch with "
            f"torchrun --nproc_per_node {cfg.devices} (docs/training.md) or leave devices unset"
        )
    if cfg.num_nodes != nodes:
        raise AvitalkError(f"train.num_nodes={cfg.num_nodes} but the launcher started {nodes} node(s)")
    has_gpu = torch.cuda.is_available()
    if cfg.accelerator == "gpu" and not has_gpu:
        raise AvitalkError("train.accelerator=gpu but no CUDA device is available")
    cpu = cfg.accelerator == "cpu" or not has_gpu
    if cpu and cfg.precision == "fp16":
        raise AvitalkError("train.precision=fp16 needs a GPU; use bf16 or fp32 on CPU")
    if "LOCAL_RANK" not in os.environ:
        # one process: forget an earlier run's process-wide Accelerate state, so a test or notebook can
        # build Trainers with other settings one after another (never done under a launcher)
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    acc = Accelerator(
        cpu=cpu,
        mixed_precision=_PRECISION[cfg.precision],
        gradient_accumulation_steps=cfg.grad_accum,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)],
    )
    set_seed(cfg.seed, device_specific=True)
    return acc, acc.device


# -------------------------------------------------------------------------------------------- the data


class ShardedSampler(Sampler[int]):
    """Per-epoch shuffled indices, split between processes, with an exact resume position.

    Epoch ``e`` uses the permutation ``randperm(n, seed + e)`` on every process. With ``drop_last``
    only whole optimizer steps (``batch_size * num_replicas * accumulate`` samples) are used, so an
    epoch ends on a step boundary whatever the gradient accumulation; process ``r`` takes
    ``perm[r::num_replicas]``, so the union of the processes' k-th batches is ``perm[kG:(k+1)G]`` --
    the k-th batch of a single process with batch size ``G``. Without ``drop_last`` the permutation is
    padded (from its start) to a multiple of ``num_replicas`` so every process gets as many batches.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        accumulate: int = 1,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in 0..{num_replicas - 1}")
        self.num_samples, self.batch_size, self.num_replicas, self.rank = num_samples, batch_size, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.accumulate = shuffle, seed, drop_last, accumulate
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Use epoch ``epoch``'s order, starting after this process's first ``skip_batches`` batches."""
        self.epoch, self.skip_batches = epoch, skip_batches

    def _epoch_indices(self) -> torch.Tensor:
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(n)
        if self.drop_last:
            step = self.batch_size * self.num_replicas * self.accumulate
            order = order[: n // step * step]
        elif n % self.num_replicas and n:
            pad = self.num_replicas - n % self.num_replicas
            order = torch.cat([order, order.repeat(math.ceil(pad / n))[:pad]])
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._epoch_indices()[self.skip_batches * self.batch_size :].tolist())

    def __len__(self) -> int:  # a whole epoch, whatever the skip (DataLoader's len counts epochs)
        return len(self._epoch_indices())


def _as_loss(out: StepOutput) -> tuple[torch.Tensor, Mapping[str, torch.Tensor | float]]:
    if isinstance(out, torch.Tensor):
        return out, {}
    loss, logs = out
    return loss, logs


# --------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Accelerate + checkpoints + logging for one training run writing into ``out_dir``.

    ``out_dir`` receives ``config.yaml`` (the resolved config), ``checkpoints/`` and ``tb/``.
    Collective calls (:meth:`log`, :meth:`all_reduce_mean`, :meth:`save`, :meth:`barrier`) must be
    made by every process in the same order.
    """

    def __init__(
        self, cfg: TrainConfig, out_dir: str | os.PathLike[str], *, config: Any = None, space: MotionSpace | None = None
    ) -> None:
        self.cfg, self.out_dir, self.config, self.space = cfg, Path(out_dir), config, space
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.accelerator, self.device = setup(cfg)
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Any] = {}
        self.schedulers: dict[str, Any] = {}
        self.step = 0
        self._writer: Any = None
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if config is not None:
                dump_yaml(config, self.out_dir / "config.yaml")

    def say(self, message: str) -> None:
        """Print ``avitalk: <message>`` to stderr on the main process (above the progress bar)."""
        if self.is_main:
            tqdm.write(f"avitalk: {message}", file=sys.stderr)

    # -- process facts and collectives
    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress (global rank 0)."""
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    def barrier(self) -> None:
        """Wait until every process gets here."""
        self.accelerator.wait_for_everyone()

    def all_reduce_mean(self, value: torch.Tensor | float) -> torch.Tensor:
        """The mean of ``value`` over all processes (a new tensor on this process's device)."""
        t = torch.as_tensor(value, dtype=torch.float32, device=self.device)
        return self.accelerator.reduce(t, reduction="mean")

    # -- objects
    def prepare(self, **objects: Any) -> tuple[Any, ...]:
        """Move models to the device and wrap them (DDP); register everything for checkpoints by name.

        Keyword names become checkpoint entry names: ``nn.Module`` -> ``<name>.safetensors``; optimizers
        and ``LRScheduler`` objects -> ``optim.*``. Schedulers step once per optimizer step (not once per
        process), so schedules are written in optimizer steps. A module without trainable parameters
        (an EMA copy) is moved to the device and checkpointed but not wrapped. Frozen backbones that
        should not be checkpointed are simply moved with ``.to(trainer.device)``. Returns the objects in
        the given order.
        """
        out = []
        for name, obj in objects.items():
            if isinstance(obj, nn.Module):
                trainable = any(p.requires_grad for p in obj.parameters())
                # DDP refuses modules without trainable parameters (e.g. motion statistics, an EMA copy)
                obj = self.accelerator.prepare_model(obj) if trainable else obj.to(self.device)
                self.modules[name] = obj
            elif isinstance(obj, torch.optim.Optimizer):
                obj = self.accelerator.prepare_optimizer(obj)
                self.optimizers[name] = obj
            elif isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
                self.schedulers[name] = obj
            else:
                raise TypeError(f"prepare({name}=...) takes modules, optimizers and LR schedulers, not {type(obj)}")
            out.append(obj)
        return tuple(out)

    def dataloader(
        self,
        dataset: Dataset,
        *,
        batch_size: int | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> DataLoader:
        """A DataLoader over this process's shard of a map-style ``dataset`` (see :class:`ShardedSampler`)."""
        bs = batch_size or self.cfg.batch_size
        sampler = ShardedSampler(
            len(dataset),  # type: ignore[arg-type]
            batch_size=bs,
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=shuffle,
            seed=self.cfg.seed,
            drop_last=drop_last,
            accumulate=self.cfg.grad_accum,
        )
        return DataLoader(
            dataset,
            batch_size=bs,
            sampler=sampler,
            collate_fn=collate_fn,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # worker seeds come from here, not from the global RNG
            persistent_workers=False,
        )

    def to_device(self, batch: Any) -> Any:
        """``batch`` (tensors nested in dicts/lists/tuples) on this process's device."""
        from accelerate.utils import send_to_device

        return send_to_device(batch, self.device, non_blocking=self.device.type == "cuda")

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate (scaled for gradient accumulation and fp16)."""
        self.accelerator.backward(loss)

    def clip_grad_norm(self) -> torch.Tensor | None:
        """Clip the global gradient norm of all prepared modules to ``cfg.grad_clip``; returns the norm."""
        if self.cfg.grad_clip is None:
            return None
        params = [p for m in self.modules.values() for p in m.parameters() if p.grad is not None]
        return self.accelerator.clip_grad_norm_(params, self.cfg.grad_clip)

    # -- the loop
    def fit(
        self,
        step_fn: Callable[[Any], StepOutput],
        loader: Any,
        *,
        eval_fn: Callable[[], Mapping[str, torch.Tensor | float]] | None = None,
        max_steps: int | None = None,
    ) -> int:
        """Train until ``max_steps`` optimizer steps; returns the step reached.

        ``step_fn(batch)`` gets a batch already on the device and returns the loss (or ``(loss, logs)``);
        backward, clipping, the optimizer and scheduler steps, logging and checkpoints happen here.
        ``eval_fn()`` (every ``cfg.eval_every`` steps and at the end, on every process, in eval mode
        under ``no_grad``) returns scalars logged as ``val/<name>``.
        """
        cfg, acc, max_steps = self.cfg, self.accelerator, max_steps or self.cfg.max_steps
        if cfg.resume:
            self.resume()
        elif find_latest(self.ckpt_dir) is not None:
            raise AvitalkError(f"{self.ckpt_dir} holds checkpoints of an earlier run; resume, or use another --out")
        batches = self._batches(loader, self.step * cfg.grad_accum)
        bar = tqdm(total=max_steps, initial=self.step, disable=not (self.is_main and cfg.progress), dynamic_ncols=True)
        self._train_mode(True)
        while self.step < max_steps:
            with acc.accumulate(*self.modules.values()):
                loss, logs = _as_loss(step_fn(next(batches)))
                self.backward(loss)
                grad_norm = self.clip_grad_norm() if acc.sync_gradients else None
                for opt in self.optimizers.values():
                    opt.step()
                    opt.zero_grad()
            self._accumulate({"loss": loss, **logs})
            if not acc.sync_gradients:
                continue
            if not acc.optimizer_step_was_skipped:
                for sched in self.schedulers.values():
                    sched.step()
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == max_steps:
                self._log_interval(grad_norm, bar)
            if eval_fn is not None and (self.step % (cfg.eval_every or max_steps) == 0 or self.step == max_steps):
                self.evaluate(eval_fn)
            if self.step % cfg.ckpt_every == 0 or self.step == max_steps:
                self.save()
        bar.close()
        self.close()
        return self.step

    def evaluate(self, eval_fn: Callable[[], Mapping[str, torch.Tensor | float]]) -> dict[str, float]:
        """Run ``eval_fn`` in eval mode without gradients; log its scalars as ``val/<name>``; return them."""
        self._train_mode(False)
        with torch.no_grad():
            scalars = eval_fn()
        self._train_mode(True)
        values = self.log({f"val/{k}": v for k, v in scalars.items()})
        self.say(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        return values

    def _train_mode(self, on: bool) -> None:
        for m in self.modules.values():
            if any(p.requires_grad for p in m.parameters()):  # EMA copies stay in eval mode
                m.train(on)

    def _batches(self, loader: Any, consumed: int) -> Iterator[Any]:
        """Endless device batches, starting after the first ``consumed`` batches of epoch 0, 1, ...

        Exact for :meth:`dataloader` loaders (the sampler jumps there). For other loaders the skipped
        batches are loaded and dropped, which matches the original run only if their order depends on
        the epoch alone (e.g. ``DistributedSampler`` with ``set_epoch``).
        """
        try:
            per_epoch = len(loader)
        except TypeError:
            per_epoch = 0
        epoch, skip = divmod(consumed, per_epoch) if per_epoch else (0, consumed)
        while True:
            sampler = getattr(loader, "sampler", None)
            if isinstance(sampler, ShardedSampler):
                sampler.set_epoch(epoch, skip_batches=skip)
                if loader.generator is not None:
                    loader.generator.manual_seed(self.cfg.seed * 1_000_003 + epoch)
                skip = 0
            elif hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            seen = 0
            for batch in loader:
                seen += 1
                if skip:
                    skip -= 1
                    continue
                yield self.to_device(batch)
            if seen == 0:
                raise AvitalkError("the training data gave no batch (fewer samples than one global batch?)")
            epoch += 1

    # -- logging
    def _accumulate(self, scalars: Mapping[str, torch.Tensor | float]) -> None:
        for k, v in scalars.items():
            v = v.detach().float().mean() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            self._sums[k] = self._sums.get(k, 0.0) + v.to(self.device)
        self._count += 1

    def _log_interval(self, grad_norm: torch.Tensor | None, bar: tqdm) -> None:
        scalars = {k: v / self._count for k, v in self._sums.items()}
        if grad_norm is not None:
            scalars["grad_norm"] = grad_norm
        for name, opt in self.optimizers.items():
            scalars["lr" if len(self.optimizers) == 1 else f"lr/{name}"] = opt.param_groups[0]["lr"]
        self._sums, self._count = {}, 0
        values = self.log(scalars)
        if not math.isfinite(values["loss"]):
            raise AvitalkError(f"training loss is {values['loss']} at step {self.step}; see {self.ckpt_dir}")
        bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "grad_norm")})

    def log(self, scalars: Mapping[str, torch.Tensor | float], step: int | None = None) -> dict[str, float]:
        """Average scalars over processes and write them to TensorBoard (main process); returns them."""
        keys = sorted(scalars)
        if not keys:
            return {}
        local = [torch.as_tensor(scalars[k], dtype=torch.float32, device=self.device).reshape(()) for k in keys]
        values = dict(zip(keys, self.all_reduce_mean(torch.stack(local)).tolist(), strict=True))
        if self.is_main and self.cfg.tensorboard:
            writer = self._tensorboard()
            for k, v in values.items():
                writer.add_scalar(k, v, self.step if step is None else step)
        return values

    def _tensorboard(self) -> Any:
        if self._writer is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise AvitalkError("TensorBoard logging needs tensorboardX (pip install tensorboardX)") from None
            self._writer = SummaryWriter(logdir=str(self.out_dir / "tb"), purge_step=self.step or None)
        return self._writer

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- checkpoints
    def _states(self) -> dict[str, Any]:
        states: dict[str, Any] = {**self.optimizers, **self.schedulers}
        if self.accelerator.scaler is not None:
            states["grad_scaler"] = self.accelerator.scaler
        return states

    def save(self) -> Path | None:
        """Checkpoint the current step (every process calls; the main one writes); returns its path there."""
        rng = self._gather(capture_rng_state())
        path = None
        if self.is_main:
            path = save_checkpoint(
                self.ckpt_dir,
                {n: unwrap_module(self.accelerator.unwrap_model(m)) for n, m in self.modules.items()},
                step=self.step,
                config=self.config,
                space=self.space,
                states=self._states(),
                rng_states=rng,
                keep_last=self.cfg.keep_last,
                extra={"world_size": self.world_size, "batch_size": self.cfg.batch_size},
            )
            self.say(f"saved {path}")
        self.barrier()
        return path

    def resume(self) -> int:
        """Load ``checkpoints/latest`` if present (weights, optimizer/scheduler state, RNG); returns the step."""
        latest = find_latest(self.ckpt_dir)
        seen = self._gather(latest.name if latest else "")
        if len(set(seen)) > 1:
            raise AvitalkError(f"processes see different checkpoints {seen}: {self.ckpt_dir} must be on a shared disk")
        if latest is None:
            return self.step
        ckpt = load_checkpoint(
            latest,
            {n: unwrap_module(self.accelerator.unwrap_model(m)) for n, m in self.modules.items()},
            self._states(),
            expect_space=self.space,
        )
        if len(ckpt.rng) == self.world_size:
            restore_rng_state(ckpt.rng[self.rank])
        else:
            self.say(
                f"the checkpoint was written by {len(ckpt.rng)} process(es), this run has {self.world_size}: "
                "random streams are reseeded, so the run is not bit-identical to an uninterrupted one"
            )
            torch.manual_seed(self.cfg.seed + 7919 * ckpt.step + self.rank)
        self._warn_config_changes(ckpt.config)
        self.step = ckpt.step
        self.say(f"resumed from {latest} (step {ckpt.step})")
        return self.step

    def _warn_config_changes(self, stored: Mapping[str, Any]) -> None:
        if not self.is_main or self.config is None or not stored:
            return
        now = _flat(self.config if isinstance(self.config, Mapping) else config_to_dict(self.config))
        before = _flat(stored)
        changed = sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))
        if changed:
            self.say(f"resuming with a changed config: {', '.join(changed)}")

    def _gather(self, obj: Any) -> list[Any]:
        from accelerate.utils import gather_object

        return list(gather_object([obj]))


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


__all__ = [
    "ShardedSampler",
    "StepOutput",
    "TrainConfig",
    "Trainer",
    "add_train_arguments",
    "launch_command",
    "launched_world",
    "maybe_relaunch",
    "setup",
    "train_overrides",
]
