"""``avitalk describe``: the stage-1 visual instruction of a speech recording (docs/stage1.md).

    avitalk describe SPEECH.wav --model RUN [--decoding greedy|beam|sample] [--beams N] [--seed N]
                     [--max-new-tokens N] [--temperature T] [--device cpu] [--llm-dtype auto]

``--model`` is a stage-1 run directory (``avitalk train instruct --out RUN``), its ``project`` phase,
a checkpoint or a stripped checkpoint directory; without it the shipped default model
(``avitalk/weights/default/instruct``) is used. Prints the instruction on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avitalk.cli import add_llm_dtype_argument
from avitalk.errors import AvitalkError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``describe`` command."""
    p = subparsers.add_parser(
        "describe",
        help="write the visual instruction (face, emotion, talking style) a speech recording suggests",
        description="Stage 1: describe the speaker's face and talking style from speech.",
    )
    p.add_argument("speech", type=Path, help="speech recording (wav/flac/...; resampled to 16 kHz mono)")
    p.add_argument(
        "--model",
        type=Path,
        help="stage-1 run, checkpoint or stripped checkpoint directory (default: the shipped model)",
    )
    p.add_argument("--decoding", choices=("greedy", "beam", "sample"), default="greedy", help="default: greedy")
    p.add_argument("--beams", type=int, default=3, help="beams for --decoding beam (default 3)")
    p.add_argument("--seed", type=int, help="seed for --decoding sample (same seed, same text)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--max-new-tokens", type=int, help="cap on generated tokens (default: the model's)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_llm_dtype_argument(p)
    p.add_argument("--no-speculative", action="store_true",
                   help="greedy token by token, without the n-gram draft (slower; same text in float32)")  # fmt: skip
    p.set_defaults(func=_describe)


def _describe(args: argparse.Namespace) -> int:
    if args.model is None:
        from avitalk.pipeline import default_models_dir

        args.model = default_models_dir() / "instruct"
        if not (args.model / "meta.json").is_file():
            raise AvitalkError(
                f"no default stage-1 model in {args.model} (this avitalk build ships none): "
                "pass --model RUN (a run of `avitalk train instruct`)"
            )
    if not args.speech.is_file():
        raise AvitalkError(f"{args.speech}: no such file")
    from avitalk.audio.io import load_audio
    from avitalk.train.load_instruct import find_stage1_checkpoint, load_stage1

    find_stage1_checkpoint(args.model)  # a wrong --model fails before any loading
    audio = load_audio(args.speech)
    describer = load_stage1(
        args.model, device=args.device, llm_dtype=args.llm_dtype, llm_backend=args.llm_backend,
        speculative=not args.no_speculative,
    )  # fmt: skip
    instruction = describer.describe(
        audio,
        decoding=args.decoding,
        num_beams=args.beams,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(instruction.text)
    return 0
