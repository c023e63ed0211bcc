"""Training: typed configs, resumable checkpoints, and the shared loop the stage recipes use.

- :mod:`avitalk.train.config`: dataclass defaults <- YAML file <- ``key=value`` overrides; strict.
- :mod:`avitalk.train.checkpoint`: safetensors + JSON checkpoints with config, motion space, RNG.
- :mod:`avitalk.train.engine`: :class:`Trainer` over Hugging Face Accelerate (DDP, mixed precision),
  progress bar, TensorBoard, resume.

See docs/training.md.
"""

from avitalk.train.checkpoint import Checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from avitalk.train.config import config_from_dict, config_to_dict, dump_yaml, load_config
from avitalk.train.engine import TrainConfig, Trainer

__all__ = [
    "Checkpoint",
    "TrainConfig",
    "Trainer",
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "load_checkpoint",
    "load_config",
    "read_checkpoint",
    "save_checkpoint",
]
