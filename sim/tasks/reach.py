"""Reach: bring the tool centre point to a random goal in free space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.drivers.arm import ArmState
from robot_rl.sim.scene import TaskBodies, vec
from robot_rl.sim.tasks.base import (
    ArmTask,
    TaskConfig,
    TaskRuntime,
    set_mocap_pos,
    uniform,
    world_frame,
)

GOAL_CENTER = np.array([0.45, 0.0, 0.3])


@dataclass
class ReachConfig(TaskConfig):
    """Reach settings."""

    name: str = "reach"
    """Task name (the Hydra ``task`` group option)."""

    goal_range: float = 0.15
    """Half-range of the goal around its nominal position per axis, m."""
    success_radius: float = 0.02
    """Distance counted as reached, m."""
    max_episode_steps: int = 80


class Reach(ArmTask):
    config_cls = ReachConfig
    object_obs_dim = 6
    default_reward_weights = {"reach": 1.0, "success": 1.0}
    cfg: ReachConfig

    def bodies(self) -> TaskBodies:
        def build(p: str, origin) -> str:
            return (
                f'    <body name="{p}goal" mocap="true" pos="{vec(np.add(origin, GOAL_CENTER))}">\n'
                f'      <geom type="sphere" size="0.015" rgba="0.1 0.8 0.2 0.6" contype="0"'
                f' conaffinity="0"/>\n    </body>'
            )

        return TaskBodies(build)

    def place_objects(self, rt: TaskRuntime, block, local, rngs) -> None:
        for k, rng in zip(local, rngs, strict=True):
            goal = GOAL_CENTER + uniform(rng, self.cfg.goal_range, 3)
            goal[2] = max(goal[2], 0.08)
            set_mocap_pos(block, "goal", k, rt.origins[block.rows.start + k] + goal)

    def goal(self, rt: TaskRuntime) -> np.ndarray:
        return world_frame(rt, rt.worlds.body_pos("goal"))

    def object_obs(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        goal = self.goal(rt)
        return np.concatenate([goal, goal - arm.ee_pos], axis=1)

    def reward_terms(self, rt: TaskRuntime, arm: ArmState) -> dict[str, np.ndarray]:
        dist = np.linalg.norm(self.goal(rt) - arm.ee_pos, axis=1)
        return {"reach": 1.0 - np.tanh(10.0 * dist), "success": self.success(rt, arm) * 1.0}

    def success(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        return np.linalg.norm(self.goal(rt) - arm.ee_pos, axis=1) < self.cfg.success_radius
