"""The scripted experts solve their tasks in every action mode, so demos are valid in each."""

import numpy as np
import pytest

from robot_rl.sim.experts import EXPERTS
from robot_rl.sim.registry import make_task
from robot_rl.sim.tasks.base import ACTION_DIMS, TaskRuntime


@pytest.mark.parametrize("mode", sorted(ACTION_DIMS))
@pytest.mark.parametrize("task", sorted(EXPERTS))
def test_expert_succeeds_in_every_world(task, mode):
    rt = TaskRuntime(make_task(task, action_mode=mode), 4)
    try:
        rt.seed(3)
        rt.reset_worlds(np.arange(4))
        succeeded = np.zeros(4, bool)
        for _ in range(rt.cfg.max_episode_steps):
            action = EXPERTS[task](rt)
            assert action.shape == (4, ACTION_DIMS[mode])
            succeeded |= rt.step(action)[3]["success"]
        assert succeeded.all()
    finally:
        rt.close()
