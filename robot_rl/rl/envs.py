"""Make a batched env for training: one of our MuJoCo tasks, or any gymnasium env id with a Box
action space (``gym:Pendulum-v1``), adapted to ``robot_rl.batched_env``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robot_rl.batched_env import BatchedEnv

GYM_PREFIX = "gym:"


def learner_obs_space(space: gym.Space, where: str) -> gym.spaces.Box:
    """A gymnasium observation space as the learners take it: a uint8 (S, S, 3) Box is a camera
    image (the conv encoder's input); any other Box becomes a flat float32 vector."""
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{where} must be a Box, got {type(space).__name__}")
    if space.dtype == np.uint8 and len(space.shape) == 3:
        height, width, channels = space.shape
        if channels != 3 or height != width:
            raise ValueError(
                f"{where} is a uint8 {space.shape} image; the conv encoder takes square RGB "
                "images, (S, S, 3) height-width-channels"
            )
        return space
    return gym.spaces.Box(-np.inf, np.inf, (int(np.prod(space.shape)),), np.float32)


class GymBatchedEnv(BatchedEnv):
    """N gymnasium envs stepped in turn, same-step autoreset; actions in [-1, 1] are rescaled to
    the env's bounds. Box observations become ``{"state": obs}``; Dict observations keep keys;
    each is an image or a flat vector (``learner_obs_space``)."""

    def __init__(
        self, env_id: str, num_envs: int, device: str | torch.device = "cpu", **kwargs: Any
    ):
        try:
            self.envs = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
        except TypeError as exc:  # a keyword the env's constructor does not take
            raise ValueError(f"{env_id} does not take the settings {kwargs}: {exc}") from exc
        except gym.error.Error as exc:  # no such id, a malformed one, a missing extra
            raise ValueError(f"gym:{env_id}: {exc}") from exc
        space = self.envs[0].action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(
                f"{env_id} has a {type(space).__name__} action space; the "
                "learners need a continuous (Box) one"
            )
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ValueError(
                f"{env_id} has unbounded actions ({space}); the learners act in [-1, 1] scaled "
                "to the bounds: give it finite ones (e.g. gymnasium.wrappers.ClipAction)"
            )
        obs_space = self.envs[0].observation_space
        if isinstance(obs_space, gym.spaces.Dict):
            self._keys = None
            spaces = dict(obs_space.spaces)
        else:
            self._keys = "state"
            spaces = {"state": obs_space}
        self.single_observation_space = gym.spaces.Dict(
            {
                k: learner_obs_space(s, f"{env_id} observation" + (f" {k!r}" if self._keys else ""))
                for k, s in spaces.items()
            }
        )
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.num_envs, self.device = num_envs, torch.device(device)
        self._obs: list[Any] = [None] * num_envs
        self._ended = [False] * num_envs  # ended and waiting for reset_envs (autoreset=False)

    def _as_dict(self, obs) -> dict[str, np.ndarray]:
        return {self._keys: obs} if self._keys else dict(obs)

    def _stack(self, items: list[dict]) -> dict[str, torch.Tensor]:
        out = {}
        for key, space in self.single_observation_space.spaces.items():
            arr = np.stack([np.asarray(i[key]).reshape(space.shape) for i in items])
            arr = arr.astype(space.dtype)
            out[key] = torch.from_numpy(arr).to(self.device)
        return out

    def reset(self, seed: int | None = None):
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seed is None else seed + i)
            self._obs[i] = self._as_dict(obs)
        self._ended = [False] * self.num_envs
        return self._stack(self._obs), {}

    def reset_envs(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        for i in torch.nonzero(mask.cpu()).flatten().tolist():
            self._obs[i] = self._as_dict(self.envs[i].reset()[0])
            self._ended[i] = False
        return self._stack(self._obs)

    def step(self, action: torch.Tensor, autoreset: bool = True):
        act = action.detach().cpu().double().numpy().clip(-1.0, 1.0)
        act = self._low + (act + 1.0) * 0.5 * (self._high - self._low)
        finals, rewards, terms, truncs, successes = [], [], [], [], []
        for i, env in enumerate(self.envs):
            if self._ended[i]:  # not stepped past its end; the outputs are to be ignored
                obs, reward, terminated, truncated, info = self._obs[i], 0.0, False, False, {}
            else:
                obs, reward, terminated, truncated, info = env.step(act[i])
                obs = self._as_dict(obs)
            finals.append(obs)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated and not terminated)
            successes.append(float(info.get("success", info.get("is_success", np.nan))))
            if (terminated or truncated) and autoreset:
                obs = self._as_dict(env.reset()[0])
            elif terminated or truncated:
                self._ended[i] = True
            self._obs[i] = obs
        t = lambda x, dt: torch.as_tensor(np.asarray(x), dtype=dt, device=self.device)  # noqa: E731
        info = {"final_obs": self._stack(finals), "success": t(successes, torch.float32)}
        terminated, truncated = t(terms, torch.bool), t(truncs, torch.bool)
        info["done"] = terminated | truncated
        return self._stack(self._obs), t(rewards, torch.float32), terminated, truncated, info

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make_env(
    task: str,
    num_envs: int,
    obs: str = "state",
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
) -> BatchedEnv:
    overrides = dict(overrides or {})
    if task.startswith(GYM_PREFIX):
        if obs != "state":
            raise ValueError(
                f"obs={obs} picks the cameras of our tasks; {task} gives its own observations "
                "(uint8 (S, S, 3) ones go through the conv encoder): leave obs at state"
            )
        return GymBatchedEnv(task[len(GYM_PREFIX) :], num_envs, device, **overrides)
    from robot_rl.sim.batched import MujocoBatchedEnv

    return MujocoBatchedEnv(task, num_envs, device=device, obs_mode=obs, **overrides)


def recorded_obs_shapes(env: BatchedEnv) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """What a demo store for ``env`` holds: the innermost env's observations (wrappers that add
    or replace keys relabel demos into their own)."""
    while isinstance(getattr(env, "env", None), BatchedEnv):
        env = env.env
    return obs_shapes(env)


def obs_shapes(env: BatchedEnv) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-key (shape, storage dtype) of one observation."""
    return {
        k: (tuple(s.shape), torch.uint8 if s.dtype == np.uint8 else torch.float32)
        for k, s in env.single_observation_space.spaces.items()
    }


def check_obs_shapes(made_for: dict[str, Any], env: BatchedEnv, what: str) -> None:
    """Refuse ``env`` unless it gives every key of ``made_for`` (key -> shape of one observation)
    in that shape; the error names ``what`` (a checkpoint, a base policy) and each difference."""
    given = {k: list(s.shape) for k, s in env.single_observation_space.spaces.items()}
    wrong = {k: list(s) for k, s in made_for.items() if given.get(k) != list(s)}
    if wrong:
        raise ValueError(
            f"{what} was made for observations {wrong}, but the env gives "
            f"{ {k: given.get(k) for k in wrong} }: it was made for another task or obs mode, "
            "or the task's observation has changed since (retrain it)"
        )
