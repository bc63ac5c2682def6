"""Command configs for ``robot-rl``. Each field's docstring is its help text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from robot_rl.pipeline import PipelineConfig
from robot_rl.policies import POLICIES
from robot_rl.policies.train import BCConfig
from robot_rl.rl.agents import PRESETS
from robot_rl.rl.trainer import TrainConfig
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


@dataclass
class EvalConfig:
    """Evaluate a checkpoint: success rate and return with 95% intervals."""

    ckpt: str = MISSING
    """Checkpoint directory (RUN_DIR/checkpoint) or run directory."""
    episodes: int = 50
    """Episodes to run."""
    num_envs: int = 8
    """Parallel envs."""
    video: str = ""
    """If set, an MP4 of the first episodes (our tasks only)."""
    seed: int = 12345
    """Seed of the evaluation episodes."""
    device: str = "cpu"
    """Device to run the policy on."""


@dataclass
class PlotConfig:
    """Plot learning curves of one or more runs side by side."""

    runs: list[str] = field(default_factory=list)
    """Run directories (also accepted as bare arguments)."""
    out: str = "curves.png"
    """Output PNG."""
    mean: bool = False
    """One line per group of runs that differ only in their ``-s<seed>`` suffix: the mean over
    seeds, shaded from the lowest to the highest."""


COMMANDS: dict[str, type] = {
    "collect": CollectConfig,
    "rollout": RolloutConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "plot": PlotConfig,
    "bc": BCConfig,
    "pipeline": PipelineConfig,
}


def register_configs(command: str) -> None:
    """Put ``command``'s config and the groups it composes into Hydra's store (only those: a
    group named like a plain field, e.g. train's ``task`` string, would capture its override)."""
    cs = ConfigStore.instance()
    for key in ("task", "algo", "policy", *(f"{name}.yaml" for name in COMMANDS)):
        cs.repo.pop(key, None)
    cs.store(name=command, node=COMMANDS[command])
    if command in ("collect", "rollout"):
        for name, task in TASKS.items():
            cs.store(group="task", name=name, node=task.config_cls)
    if command == "train":
        for name, algo in PRESETS.items():
            cs.store(group="algo", name=name, node=algo)
    if command == "bc":
        for name, (_, cfg_cls) in POLICIES.items():
            cs.store(group="policy", name=name, node=cfg_cls)
