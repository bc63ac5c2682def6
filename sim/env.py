"""The single gymnasium env: one world of ``TaskRuntime``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.sim.registry import make_task, task_config
from robot_rl.sim.tasks.base import PROPRIO_DIM, TaskConfig, TaskRuntime


def observation_space(rt: TaskRuntime) -> gym.spaces.Dict:
    """Dict space of one world's observation."""
    cfg, spaces = rt.cfg, {}
    inf = np.float32(np.inf)
    if "state" in cfg.obs_mode:
        dim = PROPRIO_DIM + rt.task.object_obs_dim
        spaces["state"] = gym.spaces.Box(-inf, inf, (dim,), np.float32)
    else:
        spaces["proprio"] = gym.spaces.Box(-inf, inf, (PROPRIO_DIM,), np.float32)
    if "pixels" in cfg.obs_mode:
        for cam in ("front", "wrist"):
            spaces[cam] = gym.spaces.Box(0, 255, (cfg.image_size, cfg.image_size, 3), np.uint8)
    return gym.spaces.Dict(spaces)


class ArmTaskEnv(gym.Env):
    """``gym.make("robot_rl/PickCube-v0", obs_mode="state", reward_type="dense", ...)``.

    Keyword arguments are the task's config fields. Observations are dicts (see
    ``observation_space``); actions are in [-1, 1]: dpos 3, drot 3, gripper 1 (+ stiffness 6 in
    variable mode).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: str = "reach",
        cfg: TaskConfig | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ):
        cfg = cfg if cfg is not None else task_config(task, **overrides)
        self.task_name = task
        self.runtime = TaskRuntime(make_task(task, cfg), num_worlds=1, num_threads=1)
        self.observation_space = observation_space(self.runtime)
        dim = self.runtime.action_dim
        self.action_space = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.control_hz}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.runtime.seed(seed)
        self.runtime.reset_worlds(np.array([0]))
        return self._obs(), {}

    def step(self, action):
        reward, terminated, truncated, info = self.runtime.step(np.asarray(action)[None])
        info = {k: v[0] for k, v in info.items()}
        return self._obs(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def _obs(self) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.runtime.observe().items()}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.runtime.render(("front",), 256)["front"][0]

    def close(self) -> None:
        self.runtime.close()
