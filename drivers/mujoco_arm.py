"""The simulated arm: the arms of B MuJoCo worlds behind the ``Arm`` interface.

The impedance law from ``robot_rl.control`` runs every physics tick (1 kHz by default), batched
across the worlds of a block; blocks run on parallel threads. Between ``mj_step1`` and
``mj_step2`` the kinematics are current, so the law sees the state a real 1 kHz controller sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numba
import numpy as np

from robot_rl.control.impedance import (
    P_ALPHA,
    ImpedanceConfig,
    ImpedanceController,
    clamp_stiffness,
    filter_row,
    torque_row,
)
from robot_rl.control.rotations import mat_to_quat
from robot_rl.drivers.arm import Arm, ArmFault, ArmState, ImpedanceCommand
from robot_rl.sim.scene import (
    GRIPPER_MAX_WIDTH,
    HOME_QPOS,
    JOINT_LOWER,
    JOINT_UPPER,
    TCP_SITE,
    VELOCITY_LIMITS,
)
from robot_rl.sim.worlds import MujocoWorlds, WorldBlock

ARM_DOF = 7
FINGERS = slice(7, 9)
GRIPPER_ACTUATOR = 7
FAULT_VELOCITY = ArmFault.JOINT_VELOCITY_LIMIT.value
FAULT_POSITION = ArmFault.JOINT_POSITION_LIMIT.value
FAULT_NON_FINITE = ArmFault.NON_FINITE_COMMAND.value


@dataclass
class MujocoArmConfig:
    """Settings of the simulated arm."""

    impedance: ImpedanceConfig = field(default_factory=ImpedanceConfig)
    """Controller gains and limits (shared with the real-time controller node)."""
    workspace_low: list[float] = field(default_factory=lambda: [0.2, -0.4, 0.0])
    """Lower corner of the box every target position is clamped into (m, arm base frame)."""
    workspace_high: list[float] = field(default_factory=lambda: [0.8, 0.4, 0.6])
    """Upper corner of that box."""


class MujocoArm(Arm):
    """B simulated arms stepped in lockstep, one per world. Poses are in each arm's base frame."""

    def __init__(self, worlds: MujocoWorlds, cfg: MujocoArmConfig | None = None):
        self.cfg = cfg or MujocoArmConfig()
        self.worlds = worlds
        self.batch_size = worlds.num_worlds
        self.controller = ImpedanceController(self.cfg.impedance, self.batch_size)
        self._origins = worlds.origins()
        self._gripper_cmd = np.full(self.batch_size, GRIPPER_MAX_WIDTH)
        self._faults = np.zeros(self.batch_size, dtype=np.int64)
        # Joint limits are enforced by the simulator; a fault is a violation beyond its softness.
        self._limits = np.array(
            [VELOCITY_LIMITS, np.subtract(JOINT_LOWER, 0.01), np.add(JOINT_UPPER, 0.01)]
        )
        self._connected = False

    # -- Arm interface -------------------------------------------------------------------------
    def connect(self) -> None:
        everything = np.arange(self.batch_size)
        self.reset_worlds(everything, np.tile(HOME_QPOS, (self.batch_size, 1)))
        self._connected = True

    def close(self) -> None:
        self._connected = False

    def read_state(self) -> ArmState:
        parts = [self._block_state(b) for b in self.worlds.blocks]
        state = ArmState(*(np.concatenate(items) for items in zip(*parts, strict=True)))
        state.ee_pos -= self._origins
        if not self._connected:
            state.faults |= ArmFault.NOT_CONNECTED.value
        return state

    def send_command(self, command: ImpedanceCommand) -> ImpedanceCommand:
        command.validate(self.batch_size)
        applied = ImpedanceCommand(
            target_pos=np.clip(command.target_pos, self.cfg.workspace_low, self.cfg.workspace_high),
            target_quat=np.asarray(command.target_quat, dtype=np.float64),
            stiffness=clamp_stiffness(np.asarray(command.stiffness), self.cfg.impedance),
            gripper_width=np.clip(command.gripper_width, 0.0, GRIPPER_MAX_WIDTH),
        )
        self.controller.set_target(
            slice(None), applied.target_pos + self._origins, applied.target_quat, applied.stiffness
        )
        self._gripper_cmd[:] = applied.gripper_width
        return applied

    def wait(self, duration: float) -> None:
        ticks = max(1, round(duration / self.worlds.dt))
        self.worlds.run(lambda block: self._simulate_block(block, ticks))

    # -- simulator-only ------------------------------------------------------------------------
    def reset_worlds(
        self, worlds: np.ndarray, arm_qpos: np.ndarray, gripper_width: np.ndarray | None = None
    ) -> None:
        """Put the arms of ``worlds`` at ``arm_qpos`` (len, 7) at rest; the controller then holds
        the resulting pose. Objects already placed in those worlds are kept; other worlds are not
        touched. Physics is not stepped."""
        worlds = np.asarray(worlds)
        widths = (
            np.full(len(worlds), GRIPPER_MAX_WIDTH)
            if gripper_width is None
            else np.asarray(gripper_width, dtype=np.float64)
        )
        for block in self.worlds.blocks:
            mine = (worlds >= block.rows.start) & (worlds < block.rows.stop)
            if not mine.any():
                continue
            local = worlds[mine] - block.rows.start
            block.qpos[local, :ARM_DOF] = arm_qpos[mine]
            block.qpos[local, FINGERS] = widths[mine, None] / 2
            block.qvel[local] = 0.0
            block.ctrl[local] = 0.0
            block.ctrl[local, GRIPPER_ACTUATOR] = widths[mine]
            block.data.qacc_warmstart.reshape(block.n, block.nv)[local] = 0.0
            mujoco.mj_forward(block.model, block.data)
            tcp = block.ids("site", TCP_SITE)[local]
            rows = worlds[mine]
            for row, site in zip(rows, tcp, strict=True):
                quat = mat_to_quat(block.data.site_xmat[site].reshape(3, 3))
                self.controller.reset(slice(row, row + 1), block.data.site_xpos[site], quat)
            self._gripper_cmd[rows] = widths[mine]
            self._faults[rows] = 0

    def _block_state(self, block: WorldBlock) -> tuple:
        d, tcp = block.data, block.ids("site", TCP_SITE)
        jac = np.empty((block.n, 6, ARM_DOF))
        _arm_jacobians(d.xaxis, d.xanchor, d.site_xpos, tcp, block.ids("joint", "joint1"), jac)
        q, qd = block.qpos[:, :ARM_DOF].copy(), block.qvel[:, :ARM_DOF].copy()
        tau_ext = block.qfrc_constraint[:, :ARM_DOF]
        wrench = (np.linalg.pinv(np.swapaxes(jac, 1, 2)) @ tau_ext[..., None])[..., 0]
        faults = self._faults[block.rows].copy()
        finite = np.isfinite(q).all(1) & np.isfinite(qd).all(1)
        faults[~finite] |= ArmFault.NON_FINITE_STATE.value
        rot = d.site_xmat[tcp].reshape(block.n, 3, 3)
        return (
            q,
            qd,
            d.site_xpos[tcp].copy(),
            mat_to_quat(rot),
            (jac @ qd[..., None])[..., 0],
            wrench,
            block.qpos[:, FINGERS].sum(1),
            faults,
        )

    def _simulate_block(self, block: WorldBlock, ticks: int) -> None:
        """``ticks`` physics steps of one block; Python does 3 calls per tick, the rest is
        compiled and runs without the GIL."""
        m, d, rows, c = block.model, block.data, block.rows, self.controller
        block.ctrl[:, GRIPPER_ACTUATOR] = self._gripper_cmd[rows]
        layout = np.array([block.nq, block.nv, block.nu])
        setpoints = (
            c.pos_desired[rows],
            c.pos_target[rows],
            c.quat_desired[rows],
            c.quat_target[rows],
            c.stiffness[rows],
            c.stiffness_target[rows],
            c.tau_prev[rows],
        )
        tcp, joint1 = block.ids("site", TCP_SITE), block.ids("joint", "joint1")
        params = self.cfg.impedance.arrays.packed
        for _ in range(ticks):
            mujoco.mj_step1(m, d)
            _control_tick(
                d, tcp, joint1, layout, setpoints, params, self._limits, self._faults[rows]
            )
            mujoco.mj_step2(m, d)
        mujoco.mj_forward(m, d)


@numba.njit(cache=True, nogil=True)
def _arm_jacobians(xaxis, xanchor, site_xpos, sites, first_joints, out):
    """Site Jacobians (n, 6, 7) of the arm joints: for a hinge, [axis x (p - anchor); axis]."""
    for k in range(sites.shape[0]):
        p = site_xpos[sites[k]]
        for j in range(ARM_DOF):
            jnt = first_joints[k] + j
            ax, an = xaxis[jnt], xanchor[jnt]
            rx, ry, rz = p[0] - an[0], p[1] - an[1], p[2] - an[2]
            out[k, 0, j] = ax[1] * rz - ax[2] * ry
            out[k, 1, j] = ax[2] * rx - ax[0] * rz
            out[k, 2, j] = ax[0] * ry - ax[1] * rx
            out[k, 3, j], out[k, 4, j], out[k, 5, j] = ax[0], ax[1], ax[2]


def _control_tick(d, sites, first_joints, layout, setpoints, params, limits, faults) -> None:
    """One 1 kHz tick of a block's arms; unpacks MuJoCo's arrays for the compiled kernel."""
    _control_kernel(
        d.xaxis,
        d.xanchor,
        d.site_xpos,
        d.site_xmat,
        d.qpos,
        d.qvel,
        d.qfrc_bias,
        d.qfrc_gravcomp,
        d.ctrl,
        sites,
        first_joints,
        layout,
        *setpoints,
        params,
        limits,
        faults,
    )


@numba.njit(cache=True, nogil=True)
def _control_kernel(
    xaxis,
    xanchor,
    site_xpos,
    site_xmat,
    qpos,
    qvel,
    qfrc_bias,
    qfrc_gravcomp,
    ctrl,
    sites,
    first_joints,
    layout,
    pos_d,
    pos_t,
    quat_d,
    quat_t,
    stiff,
    stiff_t,
    tau_prev,
    params,
    limits,
    faults,
):
    """Filter, impedance law, fault latch and ctrl for the n arms of a block. ``layout`` is the
    per-world (nq, nv, nu); ``limits`` rows are joint velocity limit, lower and upper bound."""
    nq, nv, nu = layout[0], layout[1], layout[2]
    alpha = params[P_ALPHA]
    n = sites.shape[0]
    jac = np.empty((n, 6, ARM_DOF))
    _arm_jacobians(xaxis, xanchor, site_xpos, sites, first_joints, jac)
    tau = np.empty(ARM_DOF)
    coriolis = np.empty(ARM_DOF)
    for k in range(n):
        q, qd = qpos[k * nq : k * nq + ARM_DOF], qvel[k * nv : k * nv + ARM_DOF]
        for j in range(ARM_DOF):
            # The robot cancels gravity itself, so the law adds only the Coriolis part.
            coriolis[j] = qfrc_bias[k * nv + j] - qfrc_gravcomp[k * nv + j]
        filter_row(pos_d[k], pos_t[k], quat_d[k], quat_t[k], stiff[k], stiff_t[k], alpha)
        rot = site_xmat[sites[k]].reshape(3, 3)
        torque_row(
            jac[k],
            site_xpos[sites[k]],
            rot,
            q,
            qd,
            coriolis,
            pos_d[k],
            quat_d[k],
            stiff[k],
            tau_prev[k],
            params,
            tau,
        )
        for j in range(ARM_DOF):
            if abs(qd[j]) > limits[0, j]:
                faults[k] |= FAULT_VELOCITY
            if q[j] < limits[1, j] or q[j] > limits[2, j]:
                faults[k] |= FAULT_POSITION
            if not np.isfinite(tau[j]):
                faults[k] |= FAULT_NON_FINITE
                tau[j] = 0.0  # fail safe: gravity compensation alone holds the arm
            tau_prev[k, j] = tau[j]
            ctrl[k * nu + j] = tau[j]
