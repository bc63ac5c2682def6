"""MuJoCo tasks for the arm: gymnasium envs and the batched env.

Importing this package registers ``robot_rl/Reach-v0``, ``robot_rl/PickCube-v0`` and
``robot_rl/PegInsert-v0``. Rendering is offscreen; EGL is the default GL backend (set
``MUJOCO_GL`` yourself before importing to pick another).
"""

import os

import gymnasium as gym

os.environ.setdefault("MUJOCO_GL", "egl")

ENV_IDS = {
    "reach": "robot_rl/Reach-v0",
    "pick_cube": "robot_rl/PickCube-v0",
    "peg_insert": "robot_rl/PegInsert-v0",
}


def register_envs() -> None:
    for name, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point="robot_rl.sim.env:ArmTaskEnv",
                kwargs={"task": name},
                disable_env_checker=True,
            )


register_envs()
