"""Unit tests of the impedance law on hand-built Jacobians (no simulator)."""

import numpy as np
import pytest

from robot_rl.control.impedance import (
    ImpedanceConfig,
    ImpedanceController,
    damping_from_stiffness,
    impedance_torque,
)
from robot_rl.control.rotations import axis_angle_to_quat, orientation_error, quat_to_mat

POSTURE = np.asarray(ImpedanceConfig().nullspace_posture)


def inputs(batch=1, seed=0):
    rng = np.random.default_rng(seed)
    jac = np.zeros((batch, 6, 7))
    jac[:, :, :6] = np.eye(6)  # the 7th joint is pure nullspace
    return dict(
        jac=jac,
        pos=np.zeros((batch, 3)),
        rot=np.tile(np.eye(3), (batch, 1, 1)),
        q=np.tile(POSTURE, (batch, 1)),
        qd=np.zeros((batch, 7)),
        coriolis=rng.normal(size=(batch, 7)),
    )


def law(cfg, x, pos_d=None, quat_d=None, stiffness=None, tau_prev=None):
    b = x["q"].shape[0]
    return impedance_torque(
        cfg,
        x["jac"],
        x["pos"],
        x["rot"],
        x["q"],
        x["qd"],
        x["coriolis"],
        np.zeros((b, 3)) if pos_d is None else pos_d,
        np.tile([1.0, 0, 0, 0], (b, 1)) if quat_d is None else quat_d,
        np.tile(cfg.default_stiffness(), (b, 1)) if stiffness is None else stiffness,
        x["coriolis"].copy() if tau_prev is None else tau_prev,
    )


def test_zero_error_and_velocity_give_bias_torque_only():
    cfg = ImpedanceConfig()
    x = inputs(batch=3)
    np.testing.assert_allclose(law(cfg, x), x["coriolis"], atol=1e-9)


def test_damping_is_two_zeta_sqrt_k():
    k = np.array([2000.0, 150.0, 0.0])
    np.testing.assert_allclose(damping_from_stiffness(k, 1.0), [89.4427191, 24.494897, 0.0])
    np.testing.assert_allclose(damping_from_stiffness(k, 0.5), [44.72135955, 12.2474487, 0.0])
    # In the law: a pure end-effector velocity produces -D * twist.
    cfg = ImpedanceConfig(torque_rate_limit=1e9, torque_limits=[1e9] * 7)
    x = inputs()
    x["qd"][0, :6] = [0.1, -0.2, 0.05, 0.3, 0.0, -0.1]
    x["coriolis"][:] = 0.0
    tau = law(cfg, x, tau_prev=np.zeros((1, 7)))
    d = damping_from_stiffness(cfg.default_stiffness(), 1.0)
    np.testing.assert_allclose(tau[0, :6], -d * x["qd"][0, :6], rtol=1e-6)


def test_error_is_clipped_per_axis():
    cfg = ImpedanceConfig(torque_rate_limit=1e9, torque_limits=[1e9] * 7)
    x = inputs()
    x["coriolis"][:] = 0.0
    far = np.array([[0.5, -0.3, 0.002]])  # desired 50 cm / 30 cm / 2 mm away
    quat_d = axis_angle_to_quat(np.array([[0.0, 0.0, 1.0]]))  # 1 rad about z
    tau = law(cfg, x, pos_d=far, quat_d=quat_d, tau_prev=np.zeros((1, 7)))
    k = cfg.default_stiffness()
    # current - desired, clipped: (-0.5 -> -0.01), (0.3 -> 0.01), (-0.002 stays)
    np.testing.assert_allclose(tau[0, :3], -k[:3] * np.array([-0.01, 0.01, -0.002]), rtol=1e-6)
    assert abs(tau[0, 5]) == pytest.approx(k[5] * cfg.rotational_clip, rel=1e-6)
    assert np.all(
        np.abs(tau[0, :6])
        <= k * np.r_[[cfg.translational_clip] * 3, [cfg.rotational_clip] * 3] + 1e-9
    )


def test_orientation_error_invariant_to_quaternion_sign():
    rng = np.random.default_rng(1)
    q = axis_angle_to_quat(rng.normal(size=(64, 3)))
    qd = axis_angle_to_quat(rng.normal(size=(64, 3)))
    rot = quat_to_mat(q)
    e = orientation_error(q, qd, rot)
    np.testing.assert_allclose(orientation_error(-q, qd, rot), e, atol=1e-12)
    np.testing.assert_allclose(orientation_error(q, -qd, rot), e, atol=1e-12)
    # The compiled law sees the same thing for q_d and -q_d.
    cfg = ImpedanceConfig(torque_rate_limit=1e9, torque_limits=[1e9] * 7, rotational_clip=10.0)
    x = inputs(batch=64)
    x["rot"] = rot
    np.testing.assert_allclose(law(cfg, x, quat_d=qd), law(cfg, x, quat_d=-qd), atol=1e-9)
    # As in the reference controller the error is the quaternion's vector part: sin(angle / 2)
    # along the axis from desired to current.
    small = axis_angle_to_quat(np.array([[0.0, 0.02, 0.0]]))
    identity = np.array([[1.0, 0, 0, 0]])
    np.testing.assert_allclose(
        orientation_error(small, identity), [[0, np.sin(0.01), 0]], atol=1e-9
    )


def test_torque_rate_limit_per_tick():
    cfg = ImpedanceConfig()
    x = inputs(batch=4)
    tau_prev = np.zeros((4, 7))
    far = np.full((4, 3), 0.3)
    for _ in range(20):
        tau = law(cfg, x, pos_d=far, tau_prev=tau_prev)
        assert np.all(np.abs(tau - tau_prev) <= cfg.torque_rate_limit + 1e-12)
        tau_prev = tau
    assert np.abs(tau).max() > 5.0  # it does ramp toward the demand


def test_torque_saturation():
    cfg = ImpedanceConfig(torque_rate_limit=1e9, translational_clip=1.0)
    x = inputs()
    tau = law(cfg, x, pos_d=np.array([[1.0, 1.0, 1.0]]), tau_prev=np.zeros((1, 7)))
    assert np.all(np.abs(tau) <= np.asarray(cfg.torque_limits) + 1e-12)
    assert np.isclose(np.abs(tau).max(), 87.0)


def test_stiffness_clamped_and_filtered():
    cfg = ImpedanceConfig()
    ctrl = ImpedanceController(cfg, 2)
    ctrl.set_target(
        slice(None),
        np.zeros((2, 3)),
        np.tile([1.0, 0, 0, 0], (2, 1)),
        np.array([[1e6] * 6, [-5.0] * 6]),
    )
    np.testing.assert_array_equal(ctrl.stiffness_target[0], cfg.stiffness_max)
    np.testing.assert_array_equal(ctrl.stiffness_target[1], cfg.stiffness_min)
    before = ctrl.stiffness.copy()
    ctrl.filter()
    a = cfg.filter_alpha
    np.testing.assert_allclose(ctrl.stiffness, a * ctrl.stiffness_target + (1 - a) * before)


def test_setpoint_low_pass_filter():
    cfg = ImpedanceConfig()
    ctrl = ImpedanceController(cfg, 1)
    ctrl.reset(slice(None), np.zeros((1, 3)), np.array([[1.0, 0, 0, 0]]))
    ctrl.set_target(
        slice(None), np.array([[0.1, 0, 0]]), axis_angle_to_quat(np.array([[0, 0, 0.2]]))
    )
    for _ in range(200):
        ctrl.filter()
    expected = 0.1 * (1 - (1 - cfg.filter_alpha) ** 200)
    assert ctrl.pos_desired[0, 0] == pytest.approx(expected, rel=1e-9)
    angle = 2 * np.arccos(ctrl.quat_desired[0, 0])
    assert angle == pytest.approx(0.2 * (1 - (1 - cfg.filter_alpha) ** 200), rel=1e-3)


def test_nullspace_torque_makes_no_end_effector_wrench():
    cfg = ImpedanceConfig(torque_rate_limit=1e9, torque_limits=[1e9] * 7)
    rng = np.random.default_rng(3)
    x = inputs()
    x["jac"] = rng.normal(size=(1, 6, 7))
    x["coriolis"][:] = 0.0
    x["q"] = x["q"] + rng.normal(size=(1, 7)) * 0.3  # posture error only
    tau = law(cfg, x, tau_prev=np.zeros((1, 7)))
    # A torque that makes no static wrench lies in the null space of pinv(J^T).
    wrench = np.linalg.pinv(x["jac"][0].T) @ tau[0]
    np.testing.assert_allclose(wrench, 0.0, atol=1e-5)  # damped pseudo-inverse
    assert np.abs(tau).max() > 0.1
