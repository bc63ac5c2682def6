"""The batched-env API: N worlds stepped together, returning torch tensors.

Every backend implements it (threaded MuJoCo on the CPU now; MuJoCo on the GPU and Isaac Lab
later), so learners are written once against this class.

Semantics:
- ``reset(seed)`` resets every env; returns ``(obs, info)``.
- ``step(action)`` with ``action`` (N, A) returns ``(obs, reward, terminated, truncated, info)``;
  reward (N,) float32, terminated/truncated (N,) bool and never both true.
- Autoreset happens inside ``step``: for envs that ended, ``obs`` is already the first observation
  of the next episode and ``info["final_obs"]`` holds the last observation of the one that ended
  (for the other rows it equals ``obs``). Truncated transitions must bootstrap from
  ``final_obs``; terminated ones must not bootstrap.
- ``step(action, autoreset=False)`` leaves ended envs as they are (their later steps are not part
  of any episode and their outputs must be ignored) until ``reset_envs(mask)`` resets them; this
  lets a wrapper execute an action chunk in lockstep and start new episodes on chunk boundaries.
- Observations are dicts of tensors with a leading N axis: float32 vectors and uint8 HWC images.
"""

from __future__ import annotations

import abc

import gymnasium as gym
import torch


class BatchedEnv(abc.ABC):
    num_envs: int
    device: torch.device
    single_observation_space: gym.spaces.Dict
    single_action_space: gym.spaces.Box

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict]: ...

    @abc.abstractmethod
    def step(
        self, action: torch.Tensor, autoreset: bool = True
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict]: ...

    @abc.abstractmethod
    def reset_envs(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reset the envs where ``mask`` (N,) is true; returns every env's observation."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> BatchedEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
