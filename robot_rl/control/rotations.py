"""Batched rotation helpers. Quaternions are (..., 4) in MuJoCo's (w, x, y, z) order."""

from __future__ import annotations

import numpy as np


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b, shapes (..., 4)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a × b over the last axis; cheaper than np.cross for small batches."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def quat_normalize(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """(..., 4) -> (..., 3, 3)."""
    w, x, y, z = np.moveaxis(quat_normalize(q), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def mat_to_quat(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) with w >= 0, numerically robust (largest-diagonal branch)."""
    m = np.asarray(m, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate (unnormalised) quaternions; pick the best-conditioned per element.
    cands = np.stack(
        [
            np.stack(
                [
                    1 + m00 + m11 + m22,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m00 - m11 - m22,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            np.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m00 + m11 - m22,
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m00 - m11 + m22,
                ],
                -1,
            ),
        ],
        axis=-2,
    )
    diag = np.stack([m00 + m11 + m22, m00, m11, m22], -1)
    best = np.argmax(diag, axis=-1)[..., None, None]
    q = np.take_along_axis(cands, np.broadcast_to(best, (*best.shape[:-2], 1, 4)), axis=-2)[
        ..., 0, :
    ]
    q = quat_normalize(q)
    return np.where(q[..., :1] < 0, -q, q)


def axis_angle_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) -> quaternions (..., 4)."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    half = 0.5 * angle
    scale = np.where(angle > 1e-12, np.sin(half) / np.maximum(angle, 1e-12), 0.5)
    return np.concatenate([np.cos(half), rotvec * scale], axis=-1)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) -> rotation vectors (..., 3), angle in [0, pi]."""
    q = quat_normalize(q)
    q = np.where(q[..., :1] < 0, -q, q)
    vec_norm = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(vec_norm, q[..., :1])
    scale = np.where(vec_norm > 1e-12, angle / np.maximum(vec_norm, 1e-12), 2.0)
    return q[..., 1:] * scale


def orientation_error(
    quat: np.ndarray, quat_desired: np.ndarray, rot: np.ndarray | None = None
) -> np.ndarray:
    """Orientation error (current minus desired) in the base frame, as the reference controller.

    Flips ``quat_desired`` onto the hemisphere of ``quat``, takes the vector part of
    quat⁻¹ ⊗ quat_desired and rotates it into the base frame with a minus sign, so that
    ``-K * error`` turns the current orientation toward the desired one. ``rot`` is the rotation
    matrix of ``quat`` if the caller has it. Shapes (..., 4) -> (..., 3); invariant to the sign of
    either quaternion.
    """
    sign = np.where(np.sum(quat * quat_desired, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    w, v = quat[..., :1], quat[..., 1:]
    wd, vd = sign * quat_desired[..., :1], sign * quat_desired[..., 1:]
    # vector part of (w, -v) ⊗ (wd, vd)
    err = w * vd - wd * v - cross(v, vd)
    if rot is None:
        rot = quat_to_mat(quat)
    return -(rot @ err[..., None])[..., 0]
