"""PegInsert: insert a grasped square peg into a hole with at most 2 mm total clearance.

The simulated counterpart of SERL's peg insertion: the episode starts with the peg held in the
closed gripper; the gripper action is overridden to stay closed. Contacts between peg, hole walls
and finger pads are stiff, with elliptic friction cones, so the peg jams and slides as a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_rl.control.rotations import quat_to_mat
from robot_rl.drivers.arm import ArmState
from robot_rl.sim.scene import TCP_SITE, TaskBodies, vec
from robot_rl.sim.tasks.base import (
    ArmTask,
    TaskConfig,
    TaskRuntime,
    rot6,
    set_free_pose,
    set_mocap_pos,
    uniform,
    world_frame,
)

PEG_HALF = 0.0125
PEG_HALF_LENGTH = 0.03
HOLE_DEPTH = 0.03
HOLE_OUTER = 0.05
HOLE_CENTER = np.array([0.5, 0.0, 0.0])
FINE_SCALE = 0.005
"""m: the tip's offset from the hole is observed twice, as is and as tanh(offset / FINE_SCALE).
The running normalisation divides the raw offset by its spread over the approach (3-13 cm per
axis), which leaves the millimetres the clearance asks for at 0.01-0.03 of a unit; in the
squashed copy they are 0.25-0.4."""


@dataclass
class PegInsertConfig(TaskConfig):
    """PegInsert settings."""

    name: str = "peg_insert"
    """Task name (the Hydra ``task`` group option)."""

    clearance: float = 0.002
    """Total clearance between peg and hole (hole width minus peg width), m; at most 2 mm."""
    insert_depth: float = 0.015
    """Depth of the peg's tip below the hole's rim counted as inserted, m."""
    peg_mass: float = 0.05
    """Peg mass, kg."""
    max_episode_steps: int = 100


class PegInsert(ArmTask):
    config_cls = PegInsertConfig
    object_obs_dim = 18
    default_reward_weights = {"align": 0.3, "descend": 0.3, "insert": 0.4, "success": 1.0}
    cfg: PegInsertConfig

    def __init__(self, cfg: PegInsertConfig):
        if not 0 < cfg.clearance <= 0.002:
            raise ValueError(f"clearance must be in (0, 2 mm], got {cfg.clearance}")
        super().__init__(cfg)

    locked_gripper_width = 0.0  # keep squeezing the peg whatever the policy asks

    def initial_gripper_width(self) -> float:
        return 2 * PEG_HALF

    def bodies(self) -> TaskBodies:
        inner = PEG_HALF + self.cfg.clearance / 2
        wall = (HOLE_OUTER - inner) / 2
        h = HOLE_DEPTH / 2

        def build(p: str, origin) -> str:
            walls = "\n".join(
                f'      <geom type="box" size="{sx:.5f} {sy:.5f} {h}" pos="{px:.5f} {py:.5f} {h}"'
                f' rgba="0.25 0.45 0.8 1" class="object"/>'
                for sx, sy, px, py in (
                    (wall, HOLE_OUTER, inner + wall, 0.0),
                    (wall, HOLE_OUTER, -inner - wall, 0.0),
                    (inner, wall, 0.0, inner + wall),
                    (inner, wall, 0.0, -inner - wall),
                )
            )
            peg_pos = vec(np.add(origin, HOLE_CENTER + [0, 0, 0.3]))
            return (
                f'    <body name="{p}obj_hole" mocap="true"'
                f' pos="{vec(np.add(origin, HOLE_CENTER))}">\n'
                f"{walls}\n    </body>\n"
                f'    <body name="{p}obj_peg" pos="{peg_pos}">\n'
                f'      <freejoint name="{p}obj_peg"/>\n'
                f'      <geom type="box" size="{PEG_HALF} {PEG_HALF} {PEG_HALF_LENGTH}"'
                f' mass="{self.cfg.peg_mass}" rgba="0.9 0.7 0.1 1" class="object"/>\n'
                f"    </body>"
            )

        return TaskBodies(build)

    def place_objects(self, rt: TaskRuntime, block, local, rngs) -> None:
        r = self.cfg.randomization
        tcp_ids = block.ids("site", TCP_SITE)
        for k, rng in zip(local, rngs, strict=True):
            origin = rt.origins[block.rows.start + k]
            hole = HOLE_CENTER + np.append(uniform(rng, r.object_xy, 2), 0.0)
            set_mocap_pos(block, "obj_hole", k, origin + hole)
            # The peg starts in the closed gripper, centred on the tool point, square to the jaws.
            rot = block.data.site_xmat[tcp_ids[k]].reshape(3, 3)
            offset = uniform(rng, r.grasp_offset)
            pos = block.data.site_xpos[tcp_ids[k]] + rot[:, 2] * offset
            quat = np.empty(4)
            mujoco.mju_mat2Quat(quat, rot.flatten())
            set_free_pose(block, "obj_peg", k, pos, quat)

    def peg_tip(self, rt: TaskRuntime) -> np.ndarray:
        pos = world_frame(rt, rt.worlds.body_pos("obj_peg"))
        axis = quat_to_mat(rt.worlds.body_quat("obj_peg"))[:, :, 2]
        # The tip is the end farther down (the peg may be held either way up).
        sign = np.where(axis[:, 2:3] < 0, 1.0, -1.0)
        return pos + sign * PEG_HALF_LENGTH * axis

    def hole(self, rt: TaskRuntime) -> np.ndarray:
        """Centre of the hole's rim, (B, 3)."""
        return world_frame(rt, rt.worlds.body_pos("obj_hole")) + [0.0, 0.0, HOLE_DEPTH]

    def tip_from_hole(self, rt: TaskRuntime) -> np.ndarray:
        """The peg tip relative to the hole's rim centre, (B, 3) m."""
        return self.peg_tip(rt) - self.hole(rt)

    def object_obs(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        peg = world_frame(rt, rt.worlds.body_pos("obj_peg"))
        hole = self.hole(rt)
        tip_rel = self.tip_from_hole(rt)
        fine = np.tanh(tip_rel / FINE_SCALE)
        quat = rot6(rt.worlds.body_quat("obj_peg"))
        return np.concatenate([peg, quat, hole, tip_rel, fine], 1)

    def reward_terms(self, rt: TaskRuntime, arm: ArmState) -> dict[str, np.ndarray]:
        rel = self.tip_from_hole(rt)
        xy = np.linalg.norm(rel[:, :2], axis=1)
        return {
            "align": 1.0 - np.tanh(50.0 * xy),
            "descend": (1.0 - np.tanh(20.0 * np.maximum(rel[:, 2], 0.0))) * (xy < 0.005),
            "insert": np.clip(-rel[:, 2] / self.cfg.insert_depth, 0.0, 1.0),
            "success": self.success(rt, arm) * 1.0,
        }

    def diagnostics(self, rt: TaskRuntime, arm: ArmState) -> dict[str, np.ndarray]:
        """tip_xy: the peg tip's horizontal distance from the hole's centre, m; tip_depth: how
        far the tip is below the hole's rim, m (negative above it)."""
        rel = self.tip_from_hole(rt)
        return {"tip_xy": np.linalg.norm(rel[:, :2], axis=1), "tip_depth": -rel[:, 2]}

    def success(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        rel = self.tip_from_hole(rt)
        inside = np.linalg.norm(rel[:, :2], axis=1) < PEG_HALF
        return inside & (rel[:, 2] <= -self.cfg.insert_depth)
