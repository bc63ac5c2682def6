"""The shared machinery of every arm task, vectorised over B worlds.

A task (one file each in this folder) supplies its bodies, how it places objects at reset, its
object observation, its named reward terms and its success test. ``TaskRuntime`` does the rest:
actions to impedance commands through the ``Arm`` interface, observations, termination vs
truncation, domain randomisation and rendering. The single gymnasium env is B = 1 of the same code.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from robot_rl.control.rotations import (
    axis_angle_to_quat,
    quat_conjugate,
    quat_multiply,
    quat_to_axis_angle,
    quat_to_mat,
)
from robot_rl.drivers.arm import ArmState, ImpedanceCommand
from robot_rl.drivers.mujoco_arm import MujocoArm, MujocoArmConfig
from robot_rl.sim.scene import GRIPPER_MAX_WIDTH, HOME_QPOS, TaskBodies
from robot_rl.sim.worlds import MujocoWorlds, WorldBlock

OBS_MODES = ("state", "pixels", "state+pixels")
REWARD_TYPES = ("sparse", "dense")
ACTION_DIMS = {"fixed": 7, "variable": 13, "position": 4}
"""Action size per ``action_mode``: fixed dpos 3, drot 3, gripper 1; variable adds stiffness 6;
position is dpos 3 and gripper 1 with the tool held top-down."""
GRIPPER_INDEX = {"fixed": 6, "variable": 6, "position": 3}
"""Where the gripper command sits in an action of each ``action_mode``."""
CAMERAS = ("front", "wrist")
TOP_DOWN_QUAT = np.array([0.0, 1.0, 0.0, 0.0])
PROPRIO_DIM = 36


@dataclass
class RandomizationConfig:
    """Domain randomisation, drawn per world at every reset."""

    object_xy: float = 0.05
    """Half-range of the object (or hole) position around its nominal place, m."""
    object_yaw: float = 0.0
    """Half-range of the object yaw, rad."""
    friction_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Range of a multiplier on the sliding friction of object geoms."""
    grasp_offset: float = 0.0
    """Half-range of the peg's position offset in the gripper along the tool axis, m."""
    arm_qpos_noise: float = 0.02
    """Half-range of uniform noise on the initial joint positions, rad."""


@dataclass
class TaskConfig:
    """Settings shared by every arm task."""

    name: str = ""
    """Task name; each task's config sets it."""
    obs_mode: str = "state"
    """One of state, pixels (images plus proprioception), state+pixels."""
    reward_type: str = "dense"
    """sparse: the success indicator; dense: weighted sum of named shaping terms (each in [0, 1]),
    plus a bonus when success ends the episode (``success_bonus_discount``)."""
    control_hz: float = 10.0
    """Policy rate; the impedance law and physics run at 1 kHz underneath."""
    max_episode_steps: int = 100
    """Truncation horizon in policy steps."""
    terminate_on_success: bool = True
    """End the episode (terminated, not truncated) when the task succeeds."""
    success_bonus_discount: float = 0.0
    """Dense reward, success that ends the episode: 0 pays the most the remaining steps could
    have paid, undiscounted; a discount g in (0, 1) pays best_step * g / (1 - g), the value of
    holding success forever. A learner that bootstraps at the time limit (all of ours) values
    hovering short of success as if forever, so only the second outbids hovering for it (set g
    to at least the learner's gamma); see the README's dense-reward note."""
    action_mode: str = "fixed"
    """fixed: dpose + gripper (7); variable: also per-axis stiffness (13), as VICES; position:
    dpos + gripper (4) with the tool held top-down, as SERL's PandaPickCube."""
    pos_scale: float = 0.02
    """Largest translation per step for an action of 1, m."""
    rot_scale: float = 0.1
    """Largest rotation per step for an action of 1, rad."""
    max_tilt: float = 0.5
    """Target orientation is clamped to within this many rad of top-down, per axis."""
    stiffness_low: list[float] = field(default_factory=lambda: [200.0] * 3 + [10.0] * 3)
    """Stiffness for a variable-mode action of -1, per axis."""
    stiffness_high: list[float] = field(default_factory=lambda: [4000.0] * 3 + [300.0] * 3)
    """Stiffness for a variable-mode action of +1, per axis."""
    image_size: int = 128
    """Square image side for pixel observations."""
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    """Domain randomisation."""
    arm: MujocoArmConfig = field(default_factory=MujocoArmConfig)
    """Simulated arm and controller settings."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    """Per-term weights of the dense reward; unset terms use the task's defaults."""

    def validate(self) -> None:
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if self.reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {self.reward_type!r}")
        if self.action_mode not in ACTION_DIMS:
            raise ValueError(
                f"action_mode must be one of {tuple(ACTION_DIMS)}, got {self.action_mode!r}"
            )
        if not 0.0 <= self.success_bonus_discount < 1.0:
            raise ValueError(
                f"success_bonus_discount must be in [0, 1), got {self.success_bonus_discount}"
            )


class ArmTask(abc.ABC):
    """What one task defines. Arrays are over the worlds of a block or over all B worlds."""

    config_cls: type[TaskConfig] = TaskConfig
    object_obs_dim: int = 0
    default_reward_weights: dict[str, float] = {}
    locked_gripper_width: float | None = None
    """If set, the gripper is held at this width command and the gripper action is ignored."""

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg

    @abc.abstractmethod
    def bodies(self) -> TaskBodies:
        """The task's MJCF bodies."""

    def initial_gripper_width(self) -> float:
        return GRIPPER_MAX_WIDTH

    @abc.abstractmethod
    def place_objects(
        self, rt: TaskRuntime, block: WorldBlock, local: np.ndarray, rngs: list[np.random.Generator]
    ) -> None:
        """Randomise objects of worlds ``local`` of ``block``; the arm is already reset."""

    @abc.abstractmethod
    def object_obs(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        """Privileged object state (B, object_obs_dim) in each arm's base frame."""

    @abc.abstractmethod
    def reward_terms(self, rt: TaskRuntime, arm: ArmState) -> dict[str, np.ndarray]:
        """Named dense terms, each (B,)."""

    @abc.abstractmethod
    def success(self, rt: TaskRuntime, arm: ArmState) -> np.ndarray:
        """(B,) bool."""

    def diagnostics(self, rt: TaskRuntime, arm: ArmState) -> dict[str, np.ndarray]:
        """Named physical quantities, each (B,), reported in ``info`` as ``diag/<name>`` so that
        failures can be told apart (``bench/failure_modes.py``); none by default."""
        return {}


def rot6(quat: np.ndarray) -> np.ndarray:
    """Continuous 6-D orientation (first two rotation-matrix columns), (B, 4) -> (B, 6)."""
    return quat_to_mat(quat)[..., :, :2].reshape(*quat.shape[:-1], 6)


class TaskRuntime:
    """B worlds of one task: reset, step, observe, render. Arrays are (B, ...) numpy."""

    def __init__(self, task: ArmTask, num_worlds: int, num_threads: int = 0):
        task.cfg.validate()
        self.task, self.cfg = task, task.cfg
        self.num_worlds = num_worlds
        self.worlds = MujocoWorlds(task.bodies(), num_worlds, num_threads)
        self.arm = MujocoArm(self.worlds, self.cfg.arm)
        self.arm.connect()
        self.origins = self.worlds.origins()
        self.action_dim = ACTION_DIMS[self.cfg.action_mode]
        self.substep_s = 1.0 / self.cfg.control_hz
        self.elapsed = np.zeros(num_worlds, dtype=np.int64)
        self.rngs = [np.random.default_rng(i) for i in range(num_worlds)]
        self.weights = {**task.default_reward_weights, **self.cfg.reward_weights}
        unknown = set(self.cfg.reward_weights) - set(task.default_reward_weights)
        if unknown:
            raise ValueError(
                f"unknown reward terms {sorted(unknown)}; "
                f"this task has {sorted(task.default_reward_weights)}"
            )
        self.best_step_reward = sum(max(w, 0.0) for w in self.weights.values())  # terms <= 1
        self._nominal_friction = {id(b): b.model.geom_friction.copy() for b in self.worlds.blocks}
        self._renderers: dict[int, mujoco.Renderer] = {}
        self.arm_state = self.arm.read_state()

    # -- reset --------------------------------------------------------------------------------
    def seed(self, seed: int | None) -> None:
        children = np.random.SeedSequence(seed).spawn(self.num_worlds)
        self.rngs = [np.random.default_rng(s) for s in children]

    def reset_worlds(self, worlds: np.ndarray) -> None:
        """Reset the given worlds (indices) from their own random streams."""
        worlds = np.asarray(worlds, dtype=np.int64)
        if worlds.size == 0:
            return
        r = self.cfg.randomization
        noise = np.stack(
            [self.rngs[i].uniform(-r.arm_qpos_noise, r.arm_qpos_noise, 7) for i in worlds]
        )
        widths = np.full(len(worlds), self.task.initial_gripper_width())
        self.arm.reset_worlds(worlds, np.asarray(HOME_QPOS) + noise, widths)
        for block in self.worlds.blocks:
            mine = worlds[(worlds >= block.rows.start) & (worlds < block.rows.stop)]
            if mine.size == 0:
                continue
            local = mine - block.rows.start
            rngs = [self.rngs[i] for i in mine]
            self._randomize_friction(block, local, rngs)
            self.task.place_objects(self, block, local, rngs)
            mujoco.mj_forward(block.model, block.data)
        self.elapsed[worlds] = 0
        self.arm_state = self.arm.read_state()

    def _randomize_friction(self, block: WorldBlock, local, rngs) -> None:
        lo, hi = self.cfg.randomization.friction_scale
        nominal = self._nominal_friction[id(block)]
        for k, rng in zip(local, rngs, strict=True):
            geoms = self.object_geoms(block, k)
            block.model.geom_friction[geoms, 0] = nominal[geoms, 0] * rng.uniform(lo, hi)

    def object_geoms(self, block: WorldBlock, local: int) -> np.ndarray:
        """Geom ids of world ``local``'s task objects (bodies named ``w<k>/obj_*``)."""
        return block.geoms_of_bodies(local, "obj_")

    # -- step ---------------------------------------------------------------------------------
    def apply_action(self, action: np.ndarray) -> ImpedanceCommand:
        """Map normalised actions (B, A) to an impedance command, clamp it and send it."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.num_worlds, self.action_dim):
            raise ValueError(
                f"action shape {action.shape}, want {(self.num_worlds, self.action_dim)}"
            )
        bad = ~np.isfinite(action).all(axis=1)
        if bad.any():
            raise ValueError(
                f"non-finite action in env(s) {np.flatnonzero(bad).tolist()}: "
                f"{action[bad].tolist()}; nothing was sent to the arm"
            )
        action = np.clip(action, -1.0, 1.0)
        cfg, state = self.cfg, self.arm_state
        target_pos = state.ee_pos + action[:, :3] * cfg.pos_scale
        gripper = action[:, GRIPPER_INDEX[cfg.action_mode]]
        if cfg.action_mode == "position":
            target_quat = np.tile(TOP_DOWN_QUAT, (self.num_worlds, 1))
        else:
            delta = axis_angle_to_quat(action[:, 3:6] * cfg.rot_scale)
            target_quat = quat_multiply(delta, state.ee_quat)
            # Keep the tool within max_tilt of top-down, per axis of the relative rotation.
            rel = quat_to_axis_angle(quat_multiply(quat_conjugate(TOP_DOWN_QUAT), target_quat))
            rel = np.clip(rel, -cfg.max_tilt, cfg.max_tilt)
            target_quat = quat_multiply(
                np.broadcast_to(TOP_DOWN_QUAT, rel.shape[:-1] + (4,)), axis_angle_to_quat(rel)
            )
        if cfg.action_mode == "variable":
            lo, hi = np.asarray(cfg.stiffness_low), np.asarray(cfg.stiffness_high)
            stiffness = lo + (action[:, 7:13] + 1.0) / 2.0 * (hi - lo)
        else:
            stiffness = np.tile(cfg.arm.impedance.default_stiffness(), (self.num_worlds, 1))
        width = (gripper + 1.0) / 2.0 * GRIPPER_MAX_WIDTH
        if self.task.locked_gripper_width is not None:
            width[:] = self.task.locked_gripper_width
        return self.arm.send_command(ImpedanceCommand(target_pos, target_quat, stiffness, width))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Advance one policy step. Returns reward, terminated, truncated (B,) and info."""
        self.apply_action(action)
        self.arm.wait(self.substep_s)
        self.arm_state = self.arm.read_state()
        self.elapsed += 1
        return self.evaluate()

    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        state = self.arm_state
        success = self.task.success(self, state)
        terms = self.task.reward_terms(self, state)
        terminated = success & self.cfg.terminate_on_success
        if self.cfg.reward_type == "sparse":
            reward = success.astype(np.float64)
        else:
            reward = sum(self.weights[name] * value for name, value in terms.items())
            # Success that ends the episode pays what staying at the goal would have paid, so
            # hovering just short of success does not pay better than succeeding.
            reward = np.where(terminated, reward + self.success_bonus(), reward)
        truncated = (self.elapsed >= self.cfg.max_episode_steps) & ~terminated
        info = {f"reward/{name}": value for name, value in terms.items()}
        info.update({f"diag/{name}": v for name, v in self.task.diagnostics(self, state).items()})
        info["success"] = success
        info["arm_faults"] = state.faults
        return reward, terminated, truncated, info

    def success_bonus(self) -> np.ndarray | float:
        """What a dense reward adds on the step whose success ends the episode."""
        g = self.cfg.success_bonus_discount
        if g > 0:
            return self.best_step_reward * g / (1.0 - g)
        return (self.cfg.max_episode_steps - self.elapsed) * self.best_step_reward

    # -- observe ------------------------------------------------------------------------------
    def proprio(self, state: ArmState) -> np.ndarray:
        """(B, 36): ee pos 3, ee rot6 6, ee twist 6, gripper 1, q 7, qd 7, wrench 6."""
        return np.concatenate(
            [
                state.ee_pos,
                rot6(state.ee_quat),
                state.ee_twist,
                state.gripper_width[:, None],
                state.joint_pos,
                state.joint_vel,
                state.ee_wrench,
            ],
            axis=1,
        ).astype(np.float32)

    def observe(self) -> dict[str, np.ndarray]:
        state = self.arm_state
        obs: dict[str, np.ndarray] = {}
        if "state" in self.cfg.obs_mode:
            obj = self.task.object_obs(self, state)
            obs["state"] = np.concatenate([self.proprio(state), obj], axis=1).astype(np.float32)
        else:
            obs["proprio"] = self.proprio(state)
        if "pixels" in self.cfg.obs_mode:
            obs.update(self.render(CAMERAS, self.cfg.image_size))
        return obs

    def render(self, cameras, size: int) -> dict[str, np.ndarray]:
        """uint8 (B, size, size, 3) per camera; each block renders on its own thread."""
        out = {cam: np.empty((self.num_worlds, size, size, 3), np.uint8) for cam in cameras}

        def render_block(block: WorldBlock) -> None:
            key = (id(block), size)
            if key not in self._renderers:
                self._renderers[key] = mujoco.Renderer(block.model, size, size)
            renderer = self._renderers[key]
            for cam in cameras:
                for k, cam_id in enumerate(block.ids("camera", cam)):
                    renderer.update_scene(block.data, camera=int(cam_id))
                    out[cam][block.rows.start + k] = renderer.render()

        self.worlds.run(render_block)
        return out

    def close(self) -> None:
        def close_renderers(block: WorldBlock) -> None:  # GL contexts belong to their thread
            for key in [k for k in self._renderers if k[0] == id(block)]:
                self._renderers.pop(key).close()

        self.worlds.run(close_renderers)
        self.arm.close()
        self.worlds.close()


def world_frame(rt: TaskRuntime, positions: np.ndarray) -> np.ndarray:
    """Simulator positions (B, 3) to each arm's base frame."""
    return positions - rt.origins


def set_free_pose(block: WorldBlock, joint: str, local: int, pos, quat=(1.0, 0, 0, 0)) -> None:
    """Place the free joint ``joint`` of world ``local`` at ``pos``/``quat`` (simulator frame), at
    rest."""
    jid = block.ids("joint", joint)[local]
    qadr, dadr = block.model.jnt_qposadr[jid], block.model.jnt_dofadr[jid]
    block.data.qpos[qadr : qadr + 3] = pos
    block.data.qpos[qadr + 3 : qadr + 7] = quat
    block.data.qvel[dadr : dadr + 6] = 0.0


def set_mocap_pos(block: WorldBlock, body: str, local: int, pos) -> None:
    body_id = block.ids("body", body)[local]
    block.data.mocap_pos[block.model.body_mocapid[body_id]] = pos


def uniform(rng: np.random.Generator, half_range: float, size: int | tuple = ()) -> Any:
    return rng.uniform(-half_range, half_range, size) if half_range > 0 else np.zeros(size)
