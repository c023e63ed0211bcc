"""Bundled example input: ``example_path()`` is a ~6 s English speech clip for ``avitalk animate --example``.

    from avitalk import Pipeline
    from avitalk.examples import example_path

    Pipeline.load().animate(example_path(), out_dir="out")

The clip was synthesised by avitalk's own synthetic-speech code (``make_example.py``; licences in
``README.md``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from avitalk.errors import AvitalkError

EXAMPLE = "hello.flac"
"""File name of the bundled clip."""
TEXT = "Hello there! This face was animated by avitalk, straight from the sound of my voice, with no camera at all."
"""What the clip says (written for avitalk; ``make_example.py`` speaks this text)."""
DURATION_S = 6.04
"""Length of the clip in seconds (16 kHz mono)."""


def example_path(name: str = EXAMPLE) -> Path:
    """The path of a bundled example clip (default: ``hello.flac``).

    Raises:
        AvitalkError: the file is missing from this installation.
    """
    path = Path(str(resources.files("avitalk.examples"))) / name
    if not path.is_file():
        raise AvitalkError(f"bundled example {name} is missing from this avitalk installation ({path})")
    return path


__all__ = ["DURATION_S", "EXAMPLE", "TEXT", "example_path"]
