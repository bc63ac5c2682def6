"""Command configs for ``robot-rl``. Each field's docstring is its help text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from robot_rl.sim.registry import TASKS


def _defaults(task: str) -> list[Any]:
    return ["_self_", {"task": task}]


@dataclass
class CollectConfig:
    """Collect scripted (or random) demonstrations into a zarr episode store."""

    defaults: list[Any] = field(default_factory=lambda: _defaults("pick_cube"))
    task: Any = MISSING
    """Task config group: reach, pick_cube, peg_insert; fields as task.<name>=value."""
    episodes: int = 20
    """Episodes to write."""
    out: str = "outputs/demos.zarr"
    """Store path; appended to if it exists with the same schema."""
    policy: str = "expert"
    """expert or random."""
    only_successful: bool = True
    """Write only successful episodes (demonstrations)."""
    num_envs: int = 8
    """Parallel simulated worlds."""
    seed: int = 0
    """Seed of every random draw."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class RolloutConfig:
    """Roll out a policy and render it to a video file."""

    defaults: list[Any] = field(default_factory=lambda: _defaults("pick_cube"))
    task: Any = MISSING
    """Task config group: reach, pick_cube, peg_insert."""
    policy: str = "expert"
    """expert or random."""
    episodes: int = 2
    """Episodes to roll out (played one after another)."""
    video: str = "outputs/rollout.mp4"
    """Output MP4 (front and wrist cameras side by side)."""
    size: int = 256
    """Rendered image side per camera, pixels."""
    seed: int = 0
    """Seed."""


COMMANDS: dict[str, type] = {"collect": CollectConfig, "rollout": RolloutConfig}


def register_configs() -> None:
    cs = ConfigStore.instance()
    for name, cls in COMMANDS.items():
        cs.store(name=name, node=cls)
    for name, task in TASKS.items():
        cs.store(group="task", name=name, node=task.config_cls)
