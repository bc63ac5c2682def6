"""MuJoCo tasks for the arm: gymnasium envs and the batched env.

Importing this package registers ``robot_rl/Reach-v0``, ``robot_rl/PickCube-v0`` and
``robot_rl/PegInsert-v0``. Rendering is offscreen; EGL is the default GL backend (set
``MUJOCO_GL`` yourself before importing to pick another).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.sim.registry import TASKS, register_envs  # noqa: E402

register_envs()

__all__ = ["TASKS", "register_envs"]
