"""Batched envs seen through a frozen base policy, so that off-policy learners fine-tune it
without knowing about chunks or diffusion:

- ``LatentSteeringEnv`` (DSRL): the action is the diffusion policy's initial noise for one
  chunk. Each step denoises every latent exactly once and executes the whole chunk; the reward
  is the sum of the chunk's step rewards and the chunk is done if any step is. New episodes
  start on chunk boundaries (the inner env runs without autoreset).
- ``ResidualEnv`` (ResFiT): the observation gains ``base_action``, the base policy's next
  action (chunks run open-loop, queues cleared at each episode start); the action is the action
  to execute, which the env holds within ``action_scale`` of the base action (per dim; dims left
  to the base get 0) and within the bounds. Learners store and critique executed actions, as
  ResFiT's critic does, so demonstrations enter the replay with the actions actually taken.

Both report ``info["env_steps"]``, the inner env steps taken, so budgets count real steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch

from robot_rl.batched_env import BatchedEnv
from robot_rl.policies.base import BasePolicy
from robot_rl.policies.runner import ChunkRunner, where_rows
from robot_rl.rl.envs import check_obs_shapes


class _Wrapper(BatchedEnv):
    def __init__(self, env: BatchedEnv, policy: BasePolicy):
        check_obs_shapes(policy.obs_shapes, env, "the base policy")
        if policy.action_dim != env.single_action_space.shape[0]:
            raise ValueError(
                f"the base policy acts in {policy.action_dim} dims, the env in "
                f"{env.single_action_space.shape[0]}"
            )
        self.env, self.policy = env, policy
        self.num_envs, self.device = env.num_envs, env.device
        self.runtime = getattr(env, "runtime", None)

    def close(self) -> None:
        self.env.close()


def _check_finite(action: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(action).all()):
        raise FloatingPointError(f"non-finite {what}; refusing to send it to the env")


class LatentSteeringEnv(_Wrapper):
    def __init__(self, env: BatchedEnv, policy: BasePolicy, action_magnitude: float):
        super().__init__(env, policy)
        if policy.obs_horizon != 1:
            raise ValueError("DSRL steers bases with obs_horizon=1 (the latent actor sees s only)")
        if not hasattr(policy, "sample"):
            raise ValueError(f"DSRL steers a diffusion policy, not a {policy.kind!r} policy")
        self.magnitude = action_magnitude
        self.chunk = policy.action_horizon
        self.single_observation_space = env.single_observation_space
        dim = policy.action_horizon * policy.action_dim
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self._obs: dict[str, torch.Tensor] | None = None

    def reset(self, seed: int | None = None):
        self._obs, info = self.env.reset(seed=seed)
        return self._obs, info

    def reset_envs(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        self._obs = self.env.reset_envs(mask)
        return self._obs

    def random_action(self) -> torch.Tensor:
        """Warm-up actions: latents w ~ N(0, I), i.e. the base policy's own sampling (clipped to
        the latent bound), so the first data shows the base policy, as in DSRL."""
        w = torch.randn(self.num_envs, self.single_action_space.shape[0], device=self.device)
        return (w / self.magnitude).clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, obs: dict[str, torch.Tensor], action: torch.Tensor) -> torch.Tensor:
        """Latent actions (N, Ta * A) in [-1, 1] -> executed chunks (N, Ta, A)."""
        base_obs = {k: obs[k].unsqueeze(1) for k in self.policy.obs_shapes}
        return self.policy.predict_action(base_obs, noise=action * self.magnitude)

    def step(self, action: torch.Tensor, autoreset: bool = True):
        _check_finite(action, "latent action")
        chunk = self.decode(self._obs, action.clamp(-1.0, 1.0))
        n = self.num_envs
        reward = torch.zeros(n, device=self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        terminated, truncated = torch.zeros_like(alive), torch.zeros_like(alive)
        success = torch.zeros(n, device=self.device)
        env_steps, final = 0, None
        for k in range(self.chunk):
            obs, r, term, trunc, info = self.env.step(chunk[:, k], autoreset=False)
            env_steps += int(alive.sum())
            reward += torch.where(alive, r, 0.0)
            if "success" in info:
                success = torch.where(alive, info["success"].float(), success)
            terminated |= alive & term
            truncated |= alive & trunc
            new = info["final_obs"]
            final = new if final is None else where_rows(alive, new, final)
            alive &= ~(term | trunc)
            if not bool(alive.any()):
                break
        done = terminated | truncated
        self._obs = self.env.reset_envs(done) if autoreset and bool(done.any()) else final
        out = {"final_obs": final, "success": success, "done": done, "env_steps": env_steps}
        return self._obs, reward, terminated, truncated, out


def residual_scale(
    action_scale: float,
    base_only_dims,
    action_dim: int,
    device=None,
    action_scales: Sequence[float] = (),
) -> torch.Tensor:
    """Largest residual per action dim, (A,): ``action_scales`` if given (one per dim), else
    ``action_scale``; 0 on the dims left to the base."""
    if action_scales and len(action_scales) != action_dim:
        raise ValueError(
            f"action_scales has {len(action_scales)} entries; the action has {action_dim} dims"
        )
    per_dim = list(action_scales) if action_scales else [float(action_scale)] * action_dim
    if min(per_dim) < 0:
        raise ValueError(f"residual scales must be >= 0, got {per_dim}")
    scale = torch.tensor(per_dim, dtype=torch.float32, device=device)
    scale[list(base_only_dims or [])] = 0.0
    return scale


class ResidualEnv(_Wrapper):
    def __init__(
        self,
        env: BatchedEnv,
        policy: BasePolicy,
        action_scale: float,
        seed: int = 0,
        base_only_dims: list[int] | None = None,
        action_scales: Sequence[float] = (),
    ):
        super().__init__(env, policy)
        self.base_only_dims = sorted(base_only_dims or [])
        self.scale = residual_scale(
            action_scale, base_only_dims, policy.action_dim, env.device, action_scales
        )
        self.runner = ChunkRunner(policy, env.num_envs, seed=seed)
        self._bootstrap_gen = torch.Generator(device=policy.action_low.device)
        self._bootstrap_gen.manual_seed(seed + 1)
        a = self.single_action_space = env.single_action_space
        spaces = dict(env.single_observation_space.spaces)
        spaces["base_action"] = gym.spaces.Box(a.low, a.high, a.shape, np.float32)
        self.single_observation_space = gym.spaces.Dict(spaces)
        self.low = torch.as_tensor(a.low, device=env.device)
        self.high = torch.as_tensor(a.high, device=env.device)
        self._base: torch.Tensor | None = None

    def reset(self, seed: int | None = None):
        obs, info = self.env.reset(seed=seed)
        self.runner.episode_done(torch.ones(self.num_envs, dtype=torch.bool))
        self._base = self.runner.act(obs)
        return {**obs, "base_action": self._base}, info

    def random_action(self) -> torch.Tensor:
        """Warm-up actions: no residual, i.e. the base policy alone (ResFiT's first data)."""
        return self._base.clone()

    def executed(self, action: torch.Tensor) -> torch.Tensor:
        """What reaches the env, (N, A): ``action`` held within ``scale`` of the base action and
        within the bounds (dims left to the base get exactly the base action)."""
        near = torch.minimum(
            torch.maximum(action, self._base - self.scale), self._base + self.scale
        )
        return torch.clamp(near, self.low, self.high)

    def reset_envs(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        obs = self.env.reset_envs(mask)
        self.runner.episode_done(mask)
        fresh = self.runner.act(obs, rows=mask)
        self._base = torch.where(mask.to(fresh.device)[:, None], fresh, self._base)
        return {**obs, "base_action": self._base}

    def step(self, action: torch.Tensor, autoreset: bool = True):
        _check_finite(action, "action")
        obs, reward, terminated, truncated, info = self.env.step(self.executed(action), autoreset)
        done = terminated | truncated
        final_base = None
        if bool(done.any()):  # bootstrap from the base's next action at the final observation
            final_base = self.runner.next_action_after(info["final_obs"], self._bootstrap_gen)
        if autoreset:
            self.runner.episode_done(done)
        self._base = self.runner.act(obs)  # without autoreset, ended envs' rows are ignored
        final_base = (
            self._base if final_base is None else torch.where(done[:, None], final_base, self._base)
        )
        info = {**info, "final_obs": {**info["final_obs"], "base_action": final_base}}
        info["env_steps"] = self.num_envs
        return {**obs, "base_action": self._base}, reward, terminated, truncated, info

    @torch.no_grad()
    def relabel(self, steps: dict, final: dict) -> tuple[dict, dict]:
        """A demo episode for the residual learner: each observation gains the base policy's
        action there; the demo actions stay as they were executed."""
        dev, keys = self.low.device, list(self.policy.obs_shapes)
        obs = {k: torch.cat([steps[k], final[k][None]]).to(dev) for k in keys}  # (T + 1, ...)
        t = torch.arange(len(obs[keys[0]]), device=dev)
        window = (t[:, None] + torch.arange(1 - self.policy.obs_horizon, 1, device=dev)).clamp(0)
        history = {k: v[window] for k, v in obs.items()}  # (T + 1, To, ...)
        base = self.policy.predict_action(history, generator=self._bootstrap_gen)[:, 0]
        return {**steps, "base_action": base[:-1].cpu()}, {**final, "base_action": base[-1].cpu()}
