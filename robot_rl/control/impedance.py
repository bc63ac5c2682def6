"""Variable-impedance Cartesian control law, batched over B arms or worlds.

    tau = J^T (-K clip(e) - D J qd) + N (k_ns (q_ns - q) - d_ns qd) + coriolis,   D = 2 zeta sqrt(K)

then a per-tick torque-rate limit and torque saturation. Gravity is not in the law: the robot
(or the simulator's gravity compensation) cancels it, as on a Franka. Setpoint and stiffness are
low-pass filtered every tick, ``x <- a x_target + (1 - a) x``. The same code runs in the simulator
and in the real-time controller node, so nothing here imports a simulator. The per-tick kernels
are compiled with numba: at 1 kHz a NumPy version spends ~200 us per tick in call overhead alone.

Shapes: J (B, 6, 7) with linear rows first; positions (B, 3); measured orientations as rotation
matrices (B, 3, 3); setpoint quaternions (B, 4) as (w, x, y, z); joint vectors (B, 7);
stiffness (B, 6) as [x, y, z, rx, ry, rz].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np

NUM_JOINTS = 7
_PINV_DAMPING = 1e-4


@dataclass
class ImpedanceConfig:
    """Gains and limits of the Cartesian impedance controller (defaults: the SERL controller)."""

    translational_stiffness: float = 2000.0
    """Default K for x, y, z in N/m."""
    rotational_stiffness: float = 150.0
    """Default K for rotations in Nm/rad."""
    damping_ratio: float = 1.0
    """zeta in D = 2 zeta sqrt(K)."""
    translational_clip: float = 0.01
    """Per-axis position error clip in m; bounds the static force to K * clip."""
    rotational_clip: float = 0.05
    """Per-axis orientation error clip in rad."""
    filter_alpha: float = 0.005
    """Per-tick low-pass coefficient for setpoint and stiffness (0.005 at 1 kHz: tau = 0.2 s)."""
    nullspace_stiffness: float = 10.0
    """Joint-space stiffness of the posture task in the Jacobian nullspace (Nm/rad)."""
    torque_rate_limit: float = 1.0
    """Largest change of commanded torque per tick, Nm."""
    torque_limits: list[float] = field(default_factory=lambda: [87.0] * 4 + [12.0] * 3)
    """Joint torque saturation in Nm (Franka Panda limits)."""
    stiffness_min: list[float] = field(default_factory=lambda: [0.0] * 6)
    """Lower stiffness clamp per axis."""
    stiffness_max: list[float] = field(default_factory=lambda: [4000.0] * 3 + [300.0] * 3)
    """Upper stiffness clamp per axis."""
    nullspace_posture: list[float] = field(
        default_factory=lambda: [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
    )
    """Joint posture the nullspace term pulls toward (the Franka 'ready' pose)."""

    def default_stiffness(self) -> np.ndarray:
        return np.array([self.translational_stiffness] * 3 + [self.rotational_stiffness] * 3)

    @cached_property
    def arrays(self) -> ImpedanceArrays:
        """The list-valued settings as arrays, built once (the law runs every tick)."""
        return ImpedanceArrays(
            stiffness_min=np.asarray(self.stiffness_min, dtype=np.float64),
            stiffness_max=np.asarray(self.stiffness_max, dtype=np.float64),
            packed=np.concatenate(
                [
                    [self.translational_clip] * 3,
                    [self.rotational_clip] * 3,
                    self.nullspace_posture,
                    self.torque_limits,
                    [
                        self.damping_ratio,
                        self.nullspace_stiffness,
                        self.torque_rate_limit,
                        self.filter_alpha,
                    ],
                ]
            ).astype(np.float64),
        )


@dataclass(frozen=True)
class ImpedanceArrays:
    stiffness_min: np.ndarray  # (6,)
    stiffness_max: np.ndarray  # (6,)
    packed: np.ndarray  # (24,) every scalar and vector setting, for the compiled kernels


# Layout of ``ImpedanceArrays.packed``.
P_CLIP, P_POSTURE, P_TAU_LIMITS = 0, 6, 13
P_ZETA, P_K_NS, P_RATE, P_ALPHA = 20, 21, 22, 23


def damping_from_stiffness(stiffness: np.ndarray, damping_ratio: float) -> np.ndarray:
    """D = 2 zeta sqrt(K), elementwise."""
    return 2.0 * damping_ratio * np.sqrt(np.maximum(stiffness, 0.0))


def clamp_stiffness(stiffness: np.ndarray, cfg: ImpedanceConfig) -> np.ndarray:
    return np.clip(stiffness, cfg.arrays.stiffness_min, cfg.arrays.stiffness_max)


@numba.njit(cache=True, nogil=True)
def _mat_to_quat_row(rot, out):
    """Rotation matrix (3, 3) -> unit quaternion (w, x, y, z), largest-pivot branch."""
    trace = rot[0, 0] + rot[1, 1] + rot[2, 2]
    if trace > max(rot[0, 0], rot[1, 1], rot[2, 2]):
        s = 2.0 * np.sqrt(1.0 + trace)
        out[0], out[1] = 0.25 * s, (rot[2, 1] - rot[1, 2]) / s
        out[2], out[3] = (rot[0, 2] - rot[2, 0]) / s, (rot[1, 0] - rot[0, 1]) / s
    elif rot[0, 0] >= rot[1, 1] and rot[0, 0] >= rot[2, 2]:
        s = 2.0 * np.sqrt(1.0 + rot[0, 0] - rot[1, 1] - rot[2, 2])
        out[0], out[1] = (rot[2, 1] - rot[1, 2]) / s, 0.25 * s
        out[2], out[3] = (rot[0, 1] + rot[1, 0]) / s, (rot[0, 2] + rot[2, 0]) / s
    elif rot[1, 1] >= rot[2, 2]:
        s = 2.0 * np.sqrt(1.0 + rot[1, 1] - rot[0, 0] - rot[2, 2])
        out[0], out[1] = (rot[0, 2] - rot[2, 0]) / s, (rot[0, 1] + rot[1, 0]) / s
        out[2], out[3] = 0.25 * s, (rot[1, 2] + rot[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + rot[2, 2] - rot[0, 0] - rot[1, 1])
        out[0], out[1] = (rot[1, 0] - rot[0, 1]) / s, (rot[0, 2] + rot[2, 0]) / s
        out[2], out[3] = (rot[1, 2] + rot[2, 1]) / s, 0.25 * s


@numba.njit(cache=True, nogil=True)
def _orientation_error_row(rot, quat_d, out):
    """Vector part of q^-1 (x) q_d (hemisphere-aligned), rotated to base frame, negated; q is the
    quaternion of ``rot``, so the result does not depend on which sign either quaternion has."""
    quat = np.empty(4)
    _mat_to_quat_row(rot, quat)
    sign = 1.0
    if quat[0] * quat_d[0] + quat[1] * quat_d[1] + quat[2] * quat_d[2] + quat[3] * quat_d[3] < 0:
        sign = -1.0
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    wd, xd, yd, zd = sign * quat_d[0], sign * quat_d[1], sign * quat_d[2], sign * quat_d[3]
    ex = w * xd - wd * x - (y * zd - z * yd)
    ey = w * yd - wd * y - (z * xd - x * zd)
    ez = w * zd - wd * z - (x * yd - y * xd)
    for i in range(3):
        out[i] = -(rot[i, 0] * ex + rot[i, 1] * ey + rot[i, 2] * ez)


@numba.njit(cache=True, nogil=True)
def _solve_spd(a, b):
    """Solve a x = b for a small symmetric positive-definite a (Cholesky)."""
    n = a.shape[0]
    low = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            low[i, j] = np.sqrt(s) if i == j else s / low[j, j]
    y = np.empty(n)
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= low[i, k] * y[k]
        y[i] = s / low[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, n):
            s -= low[k, i] * x[k]
        x[i] = s / low[i, i]
    return x


@numba.njit(cache=True, nogil=True)
def torque_row(jac, pos, rot, q, qd, coriolis, pos_d, quat_d, stiffness, tau_prev, params, out):
    """The law for one arm (compiled). Arguments are one row of ``impedance_torque``'s, with
    ``params`` = ``ImpedanceArrays.packed``; writes the torque into ``out``."""
    dof = q.shape[0]
    damping_ratio, k_ns, rate = params[P_ZETA], params[P_K_NS], params[P_RATE]
    err = np.empty(6)
    wrench = np.empty(6)
    for i in range(3):
        err[i] = pos[i] - pos_d[i]
    _orientation_error_row(rot, quat_d, err[3:])
    for i in range(6):
        clip = params[P_CLIP + i]
        e = min(max(err[i], -clip), clip)
        twist = 0.0
        for j in range(dof):
            twist += jac[i, j] * qd[j]
        k = stiffness[i]
        wrench[i] = -k * e - 2.0 * damping_ratio * np.sqrt(max(k, 0.0)) * twist
    # Nullspace posture torque: t - J^T (J J^T + d^2 I)^-1 J t.
    t_ns = np.empty(dof)
    for j in range(dof):
        t_ns[j] = k_ns * (params[P_POSTURE + j] - q[j]) - 2.0 * np.sqrt(k_ns) * qd[j]
    jjt = np.empty((6, 6))
    jt = np.empty(6)
    for i in range(6):
        s = 0.0
        for j in range(dof):
            s += jac[i, j] * t_ns[j]
        jt[i] = s
        for m in range(6):
            s = 0.0
            for j in range(dof):
                s += jac[i, j] * jac[m, j]
            jjt[i, m] = s
        jjt[i, i] += _PINV_DAMPING * _PINV_DAMPING
    coeff = _solve_spd(jjt, jt)
    for j in range(dof):
        tau = coriolis[j] + t_ns[j]
        for i in range(6):
            tau += jac[i, j] * (wrench[i] - coeff[i])
        tau = tau_prev[j] + min(max(tau - tau_prev[j], -rate), rate)
        limit = params[P_TAU_LIMITS + j]
        out[j] = min(max(tau, -limit), limit)


@numba.njit(cache=True, nogil=True)
def _impedance_kernel(
    jac, pos, rot, q, qd, coriolis, pos_d, quat_d, stiffness, tau_prev, params, out
):
    for b in range(q.shape[0]):
        torque_row(
            jac[b],
            pos[b],
            rot[b],
            q[b],
            qd[b],
            coriolis[b],
            pos_d[b],
            quat_d[b],
            stiffness[b],
            tau_prev[b],
            params,
            out[b],
        )


def impedance_torque(
    cfg: ImpedanceConfig,
    jac: np.ndarray,
    pos: np.ndarray,
    rot: np.ndarray,
    q: np.ndarray,
    qd: np.ndarray,
    coriolis: np.ndarray,
    pos_desired: np.ndarray,
    quat_desired: np.ndarray,
    stiffness: np.ndarray,
    tau_prev: np.ndarray,
) -> np.ndarray:
    """One tick of the law for B arms; pure function, returns the saturated torque (B, 7).

    ``pos``/``rot`` are the measured end-effector pose. Errors are current minus desired, clipped
    per axis.
    """
    out = np.empty_like(q, dtype=np.float64)
    _impedance_kernel(
        jac,
        pos,
        rot,
        q,
        qd,
        coriolis,
        pos_desired,
        quat_desired,
        stiffness,
        tau_prev,
        cfg.arrays.packed,
        out,
    )
    return out


@numba.njit(cache=True, nogil=True)
def filter_row(pos_d, pos_t, quat_d, quat_t, stiff, stiff_t, alpha):
    """In-place low-pass of one arm's setpoint and stiffness; orientation by normalised
    shortest-path lerp (slerp to first order in alpha)."""
    for i in range(3):
        pos_d[i] += alpha * (pos_t[i] - pos_d[i])
    dot = 0.0
    for i in range(4):
        dot += quat_d[i] * quat_t[i]
    sign = -1.0 if dot < 0 else 1.0
    norm = 0.0
    for i in range(4):
        quat_d[i] += alpha * (sign * quat_t[i] - quat_d[i])
        norm += quat_d[i] * quat_d[i]
    norm = np.sqrt(norm)
    for i in range(4):
        quat_d[i] /= norm
    for i in range(6):
        stiff[i] += alpha * (stiff_t[i] - stiff[i])


@numba.njit(cache=True, nogil=True)
def _filter_kernel(pos_d, pos_t, quat_d, quat_t, stiff, stiff_t, alpha):
    for b in range(pos_d.shape[0]):
        filter_row(pos_d[b], pos_t[b], quat_d[b], quat_t[b], stiff[b], stiff_t[b], alpha)


class ImpedanceController:
    """Stateful wrapper: filtered setpoint, filtered stiffness and the last torque for B arms.

    Methods take an optional ``rows`` slice so that worker threads can each run the law on their
    own block of arms while sharing one controller (basic slices are views, so updates land).
    """

    def __init__(self, cfg: ImpedanceConfig, batch_size: int):
        self.cfg = cfg
        b = batch_size
        self.pos_desired = np.zeros((b, 3))
        self.quat_desired = np.tile([1.0, 0.0, 0.0, 0.0], (b, 1))
        self.pos_target = np.zeros((b, 3))
        self.quat_target = np.tile([1.0, 0.0, 0.0, 0.0], (b, 1))
        self.stiffness = np.tile(cfg.default_stiffness(), (b, 1))
        self.stiffness_target = self.stiffness.copy()
        self.tau_prev = np.zeros((b, NUM_JOINTS))

    def reset(self, rows: slice, pos: np.ndarray, quat: np.ndarray) -> None:
        """Hold the given pose with default stiffness and no torque history."""
        for arr, value in (
            (self.pos_desired, pos),
            (self.pos_target, pos),
            (self.quat_desired, quat),
            (self.quat_target, quat),
            (self.stiffness, self.cfg.default_stiffness()),
            (self.stiffness_target, self.cfg.default_stiffness()),
            (self.tau_prev, 0.0),
        ):
            arr[rows] = value

    def set_target(self, rows: slice, pos, quat, stiffness=None) -> None:
        """New target pose (and optionally stiffness, clamped to its limits) for the given rows."""
        quat = np.asarray(quat, dtype=np.float64)
        self.pos_target[rows] = pos
        self.quat_target[rows] = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
        if stiffness is not None:
            self.stiffness_target[rows] = clamp_stiffness(np.asarray(stiffness), self.cfg)

    def filter(self, rows: slice = slice(None)) -> None:
        """Advance the low-pass filters of setpoint and stiffness by one tick."""
        _filter_kernel(
            self.pos_desired[rows],
            self.pos_target[rows],
            self.quat_desired[rows],
            self.quat_target[rows],
            self.stiffness[rows],
            self.stiffness_target[rows],
            self.cfg.filter_alpha,
        )

    def step(self, jac, pos, rot, q, qd, coriolis, rows: slice = slice(None)) -> np.ndarray:
        """Filter, then compute and remember the torque for ``rows``; returns (b, 7)."""
        self.filter(rows)
        tau = impedance_torque(
            self.cfg,
            jac,
            pos,
            rot,
            q,
            qd,
            coriolis,
            self.pos_desired[rows],
            self.quat_desired[rows],
            self.stiffness[rows],
            self.tau_prev[rows],
        )
        self.tau_prev[rows] = tau
        return tau
