"""Task names and their classes and config classes."""

from __future__ import annotations

import dataclasses
from typing import Any

from robot_rl.sim.tasks.base import ArmTask, TaskConfig
from robot_rl.sim.tasks.peg_insert import PegInsert
from robot_rl.sim.tasks.pick_cube import PickCube
from robot_rl.sim.tasks.reach import Reach

TASKS: dict[str, type[ArmTask]] = {"reach": Reach, "pick_cube": PickCube, "peg_insert": PegInsert}
from robot_rl.sim import ENV_IDS  # noqa: E402,F401  (re-exported)


def task_config(task: str, **overrides: Any) -> TaskConfig:
    """The task's config with ``overrides``; unknown keys raise a clear error."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    cls = TASKS[task].config_cls
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown {task} setting(s) {sorted(unknown)}; valid: {sorted(names)}")
    from omegaconf import OmegaConf

    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), overrides)
    except Exception as exc:  # OmegaConf's validation errors carry the offending key
        raise ValueError(f"bad {task} setting: {' '.join(str(exc).split())}") from exc
    return OmegaConf.to_object(merged)


def make_task(task: str, cfg: TaskConfig | None = None, **overrides: Any) -> ArmTask:
    return TASKS[task](cfg if cfg is not None else task_config(task, **overrides))
