"""Collect episodes from the batched simulator into an episode store."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.progress import Progress

from robot_rl.data.episode_store import EpisodeStore, schema_of
from robot_rl.sim.tasks.base import TaskRuntime

Policy = Callable[[TaskRuntime, dict[str, np.ndarray]], np.ndarray]


def random_policy(rt: TaskRuntime, obs: dict[str, np.ndarray]) -> np.ndarray:
    rng = rt.rngs[0]
    return rng.uniform(-1.0, 1.0, (rt.num_worlds, rt.action_dim))


@dataclass
class CollectStats:
    written: int
    attempted: int
    successes: int

    @property
    def success_rate(self) -> float:
        return self.successes / max(1, self.attempted)


def collect_episodes(
    rt: TaskRuntime,
    policy: Policy,
    episodes: int,
    out: str,
    seed: int,
    only_successful: bool = True,
    show_progress: bool = True,
    max_attempts: int | None = None,
) -> CollectStats:
    """Run ``policy`` in all worlds of ``rt`` and append finished episodes to ``out`` until
    ``episodes`` are written. Each episode is on disk as soon as it ends."""
    rt.seed(seed)
    rt.reset_worlds(np.arange(rt.num_worlds))
    obs = rt.observe()
    step_keys = {
        **obs,
        "action": np.zeros((rt.num_worlds, rt.action_dim), np.float32),
        "reward": np.zeros(rt.num_worlds, np.float32),
        "terminated": np.zeros(rt.num_worlds, bool),
        "truncated": np.zeros(rt.num_worlds, bool),
    }
    attrs = {
        "task": rt.cfg.name,
        "obs_mode": rt.cfg.obs_mode,
        "config": _jsonable(dataclasses.asdict(rt.cfg)),
        "seed": seed,
    }
    store = EpisodeStore.create_or_append(out, schema_of(step_keys), schema_of(obs), attrs)
    buffers: list[list[dict[str, np.ndarray]]] = [[] for _ in range(rt.num_worlds)]
    stats = CollectStats(0, 0, 0)
    max_attempts = max_attempts or 20 * episodes
    with Progress(disable=not show_progress) as progress:
        bar = progress.add_task(f"collect {rt.cfg.name}", total=episodes)
        while stats.written < episodes and stats.attempted < max_attempts:
            action = policy(rt, obs).astype(np.float32)
            reward, terminated, truncated, info = rt.step(action)
            next_obs = rt.observe()
            for i in range(rt.num_worlds):
                buffers[i].append(
                    {
                        **{k: v[i] for k, v in obs.items()},
                        "action": action[i],
                        "reward": np.float32(reward[i]),
                        "terminated": terminated[i],
                        "truncated": truncated[i],
                    }
                )
            done = np.flatnonzero(terminated | truncated)
            for i in done:
                stats.attempted += 1
                stats.successes += bool(info["success"][i])
                if stats.written < episodes and (info["success"][i] or not only_successful):
                    steps = {k: np.stack([s[k] for s in buffers[i]]) for k in step_keys}
                    store.add_episode(steps, {k: v[i] for k, v in next_obs.items()})
                    stats.written += 1
                    progress.update(bar, completed=stats.written)
                buffers[i] = []
            if done.size:
                rt.reset_worlds(done)
                next_obs = rt.observe()
            obs = next_obs
    return stats


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
