"""Task names, their classes and config classes, and gymnasium registration."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym

from robot_rl.sim.tasks.base import ArmTask, TaskConfig
from robot_rl.sim.tasks.peg_insert import PegInsert
from robot_rl.sim.tasks.pick_cube import PickCube
from robot_rl.sim.tasks.reach import Reach

TASKS: dict[str, type[ArmTask]] = {"reach": Reach, "pick_cube": PickCube, "peg_insert": PegInsert}
ENV_IDS = {"reach": "robot_rl/Reach-v0", "pick_cube": "robot_rl/PickCube-v0",
           "peg_insert": "robot_rl/PegInsert-v0"}


def task_config(task: str, **overrides: Any) -> TaskConfig:
    """The task's config with ``overrides``; unknown keys raise a clear error."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    cls = TASKS[task].config_cls
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown {task} setting(s) {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**overrides)


def make_task(task: str, cfg: TaskConfig | None = None, **overrides: Any) -> ArmTask:
    return TASKS[task](cfg if cfg is not None else task_config(task, **overrides))


def register_envs() -> None:
    for name, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="robot_rl.sim.env:ArmTaskEnv",
                         kwargs={"task": name}, disable_env_checker=True)
