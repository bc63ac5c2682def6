"""PickCube: grasp a cube from the table and lift it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.drivers.arm import ArmState
from robot_rl.sim.scene import TaskBodies, vec
from robot_rl.sim.tasks.base import (
    ArmTask,
    TaskConfig,
    TaskRuntime,
    rot6,
    set_free_pose,
    uniform,
    world_frame,
)

CUBE_HALF = 0.02
CUBE_CENTER = np.array([0.5, 0.0, CUBE_HALF])


@dataclass
class PickCubeConfig(TaskConfig):
    """PickCube settings."""

    name: str = "pick_cube"
    """Task name (the Hydra ``task`` group option)."""

    lift_height: float = 0.05
    """Height of the cube's bottom above the table counted as lifted, m."""
    cube_mass: float = 0.05
    """Cube mass, kg."""


class PickCube(ArmTask):
    config_cls = PickCubeConfig
    object_obs_dim = 12
    default_reward_weights = {"reach": 0.25, "grasp": 0.25, "lift": 0.5, "success": 1.0}
    cfg: PickCubeConfig

    def bodies(self) -> TaskBodies:
        def build(p: str, origin) -> str:
            return (
                f'    <body name="{p}obj_cube" pos="{vec(np.add(origin, CUBE_CENTER))}">\n'
                f'      <freejoint name="{p}obj_cube"/>\n'
                f'      <geom type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}"'
                f' mass="{self.cfg.cube_mass}" rgba="0.85 0.15 0.15 1" class="object"/>\n'
                f"    </body>"
            )

        return TaskBodies(build)

    def place_objects(self, rt: TaskRuntime, block, local, rngs) -> None:
        r = self.cfg.randomization
        for k, rng in zip(local, rngs, strict=True):
            pos = CUBE_CENTER + np.append(uniform(rng, r.object_xy, 2), 0.0)
            yaw = uniform(rng, r.object_yaw)
            quat = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
            set_free_pose(block, "obj_cube", k, rt.origins[block.rows.start + k] + pos, quat)

    def cube(self, rt: TaskRuntime) -> tuple[np.ndarray, np.ndarray]:
        return world_frame(rt, rt.worlds.body_pos("obj_cube")), rt.worlds.body_quat("obj_cube")

    def object_obs(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        pos, quat = self.cube(rt)
        return np.concatenate([pos, rot6(quat), pos - arm.ee_pos], axis=1)

    def grasped(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        pos, _ = self.cube(rt)
        near = np.linalg.norm(pos - arm.ee_pos, axis=1) < 0.02
        squeezing = arm.gripper_width < 2 * CUBE_HALF + 0.004
        return near & squeezing & (arm.gripper_width > 2 * CUBE_HALF - 0.01)

    def reward_terms(self, rt: TaskRuntime, arm: ArmState) -> dict[str, np.ndarray]:
        pos, _ = self.cube(rt)
        dist = np.linalg.norm(pos - arm.ee_pos, axis=1)
        grasped = self.grasped(rt, arm)
        lift = np.clip((pos[:, 2] - CUBE_HALF) / self.cfg.lift_height, 0.0, 1.0)
        return {
            "reach": 1.0 - np.tanh(10.0 * dist),
            "grasp": grasped * 1.0,
            "lift": lift * grasped,
            "success": self.success(rt, arm) * 1.0,
        }

    def diagnostics(self, rt: TaskRuntime, arm: ArmState) -> dict[str, np.ndarray]:
        """cube_lift: the cube's bottom above the table, m; tcp_to_cube: the tool point's
        distance from the cube's centre, m; gripper_width: m."""
        pos, _ = self.cube(rt)
        return {
            "cube_lift": pos[:, 2] - CUBE_HALF,
            "tcp_to_cube": np.linalg.norm(pos - arm.ee_pos, axis=1),
            "gripper_width": arm.gripper_width.copy(),
        }

    def success(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        pos, _ = self.cube(rt)
        return (pos[:, 2] - CUBE_HALF >= self.cfg.lift_height) & self.grasped(rt, arm)
