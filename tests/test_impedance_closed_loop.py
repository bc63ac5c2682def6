"""The impedance law driving the simulated arm through the Arm interface."""

import mujoco
import numpy as np
import pytest

from robot_rl.drivers.arm import ImpedanceCommand
from robot_rl.drivers.mujoco_arm import MujocoArm, _arm_jacobians
from robot_rl.sim.scene import TCP_SITE, TaskBodies
from robot_rl.sim.worlds import MujocoWorlds


@pytest.fixture
def arm():
    worlds = MujocoWorlds(TaskBodies(), num_worlds=2, num_threads=2)
    arm = MujocoArm(worlds)
    arm.connect()
    yield arm
    arm.close()
    worlds.close()


def command(arm, pos, quat, stiffness=None):
    b = arm.batch_size
    k = np.tile(arm.cfg.impedance.default_stiffness(), (b, 1)) if stiffness is None else stiffness
    return ImpedanceCommand(pos, quat, k, np.full(b, 0.08))


def test_jacobian_matches_mujoco(arm):
    block = arm.worlds.blocks[0]
    m, d = block.model, block.data
    jac = np.empty((block.n, 6, 7))
    tcp = block.ids("site", TCP_SITE)
    _arm_jacobians(d.xaxis, d.xanchor, d.site_xpos, tcp, block.ids("joint", "joint1"), jac)
    jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
    mujoco.mj_jacSite(m, d, jacp, jacr, tcp[0])
    np.testing.assert_allclose(jac[0], np.vstack([jacp[:, :7], jacr[:, :7]]), atol=1e-12)


def test_free_space_step_reaches_target(arm):
    start = arm.read_state()
    target = start.ee_pos + np.array([[0.08, 0.05, -0.10], [-0.05, -0.08, 0.05]])
    arm.send_command(command(arm, target, start.ee_quat))
    arm.wait(3.0)
    state = arm.read_state()
    np.testing.assert_allclose(state.ee_pos, target, atol=2e-3)
    assert np.abs(state.ee_twist).max() < 5e-3
    assert np.all(state.faults == 0)
    # The two worlds are independent: each went to its own target.
    assert np.linalg.norm(state.ee_pos[0] - state.ee_pos[1]) > 0.1


def test_contact_force_is_bounded_by_stiffness_times_clip(arm):
    """Pressing 10 cm into the table yields K * clip of force, not K * 10 cm."""
    start = arm.read_state()
    target = start.ee_pos.copy()
    target[:, 2] = -0.10  # the table top is z = 0; the fingertips touch it first
    arm.cfg.workspace_low = [0.2, -0.4, -0.2]  # let the target sit below the table top
    arm.send_command(command(arm, target, start.ee_quat))
    arm.wait(6.0)
    state = arm.read_state()
    expected = arm.cfg.impedance.translational_stiffness * arm.cfg.impedance.translational_clip
    block = arm.worlds.blocks[0]
    m, d = block.model, block.data
    table = block.ids("geom", "table")
    force, buf = 0.0, np.zeros(6)
    for i in range(d.ncon):
        con = d.contact[i]
        if con.geom1 in table[:1] or con.geom2 in table[:1]:
            mujoco.mj_contactForce(m, d, i, buf)
            force += buf[0]
    assert 0.85 * expected < force <= 1.1 * expected
    # The driver's external-wrench estimate sees the same push from below.
    assert state.ee_wrench[0, 2] == pytest.approx(force, rel=0.15)


def test_non_finite_command_is_refused(arm):
    state = arm.read_state()
    bad = state.ee_pos.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        arm.send_command(command(arm, bad, state.ee_quat))


def test_commands_are_clamped(arm):
    state = arm.read_state()
    far = np.full((2, 3), 5.0)
    huge = np.full((2, 6), 1e6)
    applied = arm.send_command(command(arm, far, state.ee_quat, huge))
    np.testing.assert_array_equal(applied.target_pos, np.tile(arm.cfg.workspace_high, (2, 1)))
    np.testing.assert_array_equal(applied.stiffness[0], arm.cfg.impedance.stiffness_max)
