"""The work behind each ``robot-rl`` subcommand; configs come composed and typed."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from robot_rl.configs.schema import CollectConfig, RolloutConfig

console = Console(stderr=True)


def _policy(name: str, task: str):
    from robot_rl.data.collect import random_policy
    from robot_rl.sim.experts import EXPERTS

    if name == "expert":
        expert = EXPERTS[task]
        return lambda rt, obs: expert(rt)
    if name == "random":
        return random_policy
    raise ValueError(f"policy must be expert or random, got {name!r}")


def collect(cfg: CollectConfig) -> int:
    from robot_rl.data.collect import collect_episodes
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime

    policy = _policy(cfg.policy, cfg.task.name)
    rt = TaskRuntime(make_task(cfg.task.name, cfg.task), cfg.num_envs)
    try:
        stats = collect_episodes(
            rt, policy, cfg.episodes, cfg.out, cfg.seed, cfg.only_successful, cfg.progress
        )
    finally:
        rt.close()
    console.print(
        f"wrote {stats.written} episodes to {cfg.out} "
        f"({stats.successes}/{stats.attempted} attempts succeeded)"
    )
    return 0 if stats.written == cfg.episodes else 1


def rollout(cfg: RolloutConfig) -> int:
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime
    from robot_rl.video import write_video

    policy = _policy(cfg.policy, cfg.task.name)
    rt = TaskRuntime(make_task(cfg.task.name, cfg.task), 1, 1)
    frames, results = [], []
    try:
        rt.seed(cfg.seed)
        for _ in range(cfg.episodes):
            rt.reset_worlds(np.array([0]))
            done = False
            while not done:
                images = rt.render(("front", "wrist"), cfg.size)
                frames.append(np.concatenate([images["front"][0], images["wrist"][0]], axis=1))
                _, terminated, truncated, info = rt.step(policy(rt, rt.observe()))
                done = bool(terminated[0] or truncated[0])
            results.append(bool(info["success"][0]))
        images = rt.render(("front", "wrist"), cfg.size)
        frames.append(np.concatenate([images["front"][0], images["wrist"][0]], axis=1))
    finally:
        rt.close()
    write_video(cfg.video, frames, fps=rt.cfg.control_hz)
    console.print(f"wrote {cfg.video}: {len(frames)} frames, success per episode {results}")
    return 0
