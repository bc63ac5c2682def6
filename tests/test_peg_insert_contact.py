"""PegInsert is contact-rich: the 2 mm clearance is real geometry, not a tolerance in a test."""

import numpy as np
import pytest

from robot_rl.sim.experts import _move, _with_gripper
from robot_rl.sim.registry import make_task
from robot_rl.sim.tasks.base import TaskRuntime


def press_peg(offset_xy: float, steps: int = 110):
    """Hold the peg tip over the hole shifted by ``offset_xy`` and push down compliantly."""
    rt = TaskRuntime(make_task("peg_insert", randomization={"object_xy": 0.0}), 1, 1)
    rt.seed(0)
    rt.reset_worlds(np.array([0]))
    task = rt.task
    contacts = 0
    for step in range(steps):
        tip, hole = task.peg_tip(rt), task.hole(rt)
        goal = hole + [offset_xy, 0.0, 0.01 if step < 70 else -0.03]
        rt.step(_with_gripper(rt, _move(rt, goal - (tip - rt.arm_state.ee_pos), 0.6), [-1.0]))
        contacts += _peg_hole_contacts(rt)
    depth = (task.hole(rt) - task.peg_tip(rt))[0, 2]
    rt.close()
    return depth, contacts


def _peg_hole_contacts(rt) -> int:
    block = rt.worlds.blocks[0]
    m, d = block.model, block.data
    peg = block.ids("body", "obj_peg")[0]
    hole = block.ids("body", "obj_hole")[0]
    bodies = {int(m.geom_bodyid[d.contact[i].geom1]) for i in range(d.ncon)} | {
        int(m.geom_bodyid[d.contact[i].geom2]) for i in range(d.ncon)
    }
    return int(peg in bodies and hole in bodies)


@pytest.mark.slow
def test_aligned_peg_goes_in_and_offset_peg_jams_on_the_rim():
    depth_aligned, _ = press_peg(0.0)
    depth_offset, contacts = press_peg(0.004)  # 4 mm off: more than the 1 mm per side
    assert depth_aligned > 0.015
    assert depth_offset < 0.002  # rests on the rim
    assert contacts > 10  # pressed against the hole block for many steps
