"""Scripted experts: stateless feedback rules on privileged state, batched over B worlds.

They act through the same normalised action interface as a learner (dpos, drot, gripper, in
the task's action mode), so their demonstrations are valid training data. Rotation actions
hold the tool top-down.
"""

from __future__ import annotations

import numpy as np

from robot_rl.control.rotations import orientation_error, quat_to_mat
from robot_rl.sim.tasks.base import GRIPPER_INDEX, TOP_DOWN_QUAT, TaskRuntime
from robot_rl.sim.tasks.peg_insert import PEG_HALF, PegInsert
from robot_rl.sim.tasks.pick_cube import PickCube
from robot_rl.sim.tasks.reach import Reach

OPEN, CLOSE = 1.0, -1.0


def _move(rt: TaskRuntime, target: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Translation and top-down rotation actions toward ``target`` (B, 3) -> (B, 6)."""
    state = rt.arm_state
    dpos = gain * (target - state.ee_pos) / rt.cfg.pos_scale
    rot_err = orientation_error(
        state.ee_quat,
        np.broadcast_to(TOP_DOWN_QUAT, state.ee_quat.shape),
        quat_to_mat(state.ee_quat),
    )
    drot = -rot_err / rt.cfg.rot_scale
    return np.clip(np.concatenate([dpos, drot], axis=1), -1.0, 1.0)


def _with_gripper(rt: TaskRuntime, motion: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """(B, action_dim) in the runtime's action mode from ``motion`` (B, 6) and ``gripper`` (B,).
    Position mode keeps dpos only (the controller holds the tool top-down); variable mode leaves
    the stiffness actions at 0, mid-range."""
    action = np.zeros((rt.num_worlds, rt.action_dim))
    gripper_at = GRIPPER_INDEX[rt.cfg.action_mode]  # the motion entries come before it
    action[:, :gripper_at] = motion[:, :gripper_at]
    action[:, gripper_at] = gripper
    return action


def reach_expert(rt: TaskRuntime) -> np.ndarray:
    task: Reach = rt.task
    return _with_gripper(rt, _move(rt, task.goal(rt)), np.full(rt.num_worlds, OPEN))


def pick_cube_expert(rt: TaskRuntime) -> np.ndarray:
    task: PickCube = rt.task
    state = rt.arm_state
    cube, _ = task.cube(rt)
    tcp = state.ee_pos
    grasped = task.grasped(rt, state)
    xy_err = np.linalg.norm(cube[:, :2] - tcp[:, :2], axis=1)
    hover = cube + [0.0, 0.0, 0.06]
    grasp_at = cube + [0.0, 0.0, 0.005]
    lift_to = cube[:, :2]
    aligned = xy_err < 0.006
    low = tcp[:, 2] - grasp_at[:, 2] < 0.008
    closing = aligned & low & ~grasped
    target = np.where(aligned[:, None], grasp_at, hover)
    target = np.where(grasped[:, None], np.column_stack([lift_to, np.full(len(tcp), 0.2)]), target)
    target = np.where(closing[:, None], grasp_at, target)
    gripper = np.where(grasped | closing, CLOSE, OPEN)
    return _with_gripper(rt, _move(rt, target), gripper)


def peg_insert_expert(rt: TaskRuntime) -> np.ndarray:
    task: PegInsert = rt.task
    tcp = rt.arm_state.ee_pos
    tip = task.peg_tip(rt)
    hole = task.hole(rt)
    # Steer the peg tip (not the tool point) over the hole, then press down compliantly.
    offset = tip - tcp
    xy_err = np.linalg.norm(tip[:, :2] - hole[:, :2], axis=1)
    above = tip[:, 2] > hole[:, 2] + 0.003
    aligned = xy_err < 0.6 * PEG_HALF * 0.1
    target_tip = hole + np.where((above & ~aligned)[:, None], [0.0, 0.0, 0.01], [0.0, 0.0, -0.03])
    return _with_gripper(rt, _move(rt, target_tip - offset, gain=0.6), np.full(len(tcp), CLOSE))


EXPERTS = {"reach": reach_expert, "pick_cube": pick_cube_expert, "peg_insert": peg_insert_expert}
