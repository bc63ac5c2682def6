"""Threaded MuJoCo backend of the batched-env API (``robot_rl.batched_env``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robot_rl.batched_env import BatchedEnv
from robot_rl.sim.env import observation_space
from robot_rl.sim.registry import make_task, task_config
from robot_rl.sim.tasks.base import TaskConfig, TaskRuntime


class MujocoBatchedEnv(BatchedEnv):
    """N worlds of one task; worlds are split over ``num_threads`` blocks (0: one per core)."""

    def __init__(
        self,
        task: str,
        num_envs: int,
        cfg: TaskConfig | None = None,
        device: str | torch.device = "cpu",
        num_threads: int = 0,
        **overrides: Any,
    ):
        cfg = cfg if cfg is not None else task_config(task, **overrides)
        self.runtime = TaskRuntime(make_task(task, cfg), num_envs, num_threads)
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.single_observation_space = observation_space(self.runtime)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self.runtime.action_dim,), np.float32)

    def _tensors(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v).to(self.device) for k, v in obs.items()}

    def reset(self, seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
        if seed is not None:
            self.runtime.seed(seed)
        self.runtime.reset_worlds(np.arange(self.num_envs))
        return self._tensors(self.runtime.observe()), {}

    def reset_envs(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        self.runtime.reset_worlds(np.flatnonzero(mask.cpu().numpy()))
        return self._tensors(self.runtime.observe())

    def step(self, action: torch.Tensor, autoreset: bool = True):
        act = action.detach().to("cpu", torch.float64).numpy()
        reward, terminated, truncated, info = self.runtime.step(act)
        final = self.runtime.observe()
        done = terminated | truncated
        if autoreset and done.any():
            self.runtime.reset_worlds(np.flatnonzero(done))
            obs = self.runtime.observe()
        else:
            obs = final
        out_info: dict[str, Any] = {
            k: torch.from_numpy(np.asarray(v)).to(self.device) for k, v in info.items()
        }
        out_info["final_obs"] = self._tensors(final)
        out_info["done"] = torch.from_numpy(done).to(self.device)
        return (
            self._tensors(obs),
            torch.from_numpy(reward.astype(np.float32)).to(self.device),
            torch.from_numpy(terminated).to(self.device),
            torch.from_numpy(truncated).to(self.device),
            out_info,
        )

    def close(self) -> None:
        self.runtime.close()
