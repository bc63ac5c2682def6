"""The work behind each ``robot-rl`` subcommand; configs come composed and typed."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from robot_rl.configs.schema import CollectConfig, EvalConfig, PlotConfig, RolloutConfig
from robot_rl.rl.trainer import TrainConfig

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

    if cfg.episodes < 1 or cfg.num_envs < 1:
        raise ValueError(
            f"collect at least 1 episode in 1 world, not {cfg.episodes} in {cfg.num_envs}"
        )
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


def record_video(task_cfg, policy, episodes: int, path: str, size: int, seed: int) -> list[bool]:
    """Roll ``policy(runtime, obs) -> actions`` out in one world and write front|wrist video."""
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime
    from robot_rl.video import write_video

    rt = TaskRuntime(make_task(task_cfg.name, task_cfg), 1, 1)
    frames, results = [], []

    def frame() -> None:
        images = rt.render(("front", "wrist"), size)
        frames.append(np.concatenate([images["front"][0], images["wrist"][0]], axis=1))

    try:
        rt.seed(seed)
        for _ in range(episodes):
            rt.reset_worlds(np.array([0]))
            done = False
            while not done:
                frame()
                _, terminated, truncated, info = rt.step(policy(rt, rt.observe()))
                done = bool(terminated[0] or truncated[0])
            results.append(bool(info["success"][0]))
        frame()
    finally:
        rt.close()
    write_video(path, frames, fps=rt.cfg.control_hz)
    return results


def rollout(cfg: RolloutConfig) -> int:
    policy = _policy(cfg.policy, cfg.task.name)
    results = record_video(cfg.task, policy, cfg.episodes, cfg.video, cfg.size, cfg.seed)
    console.print(f"wrote {cfg.video}: success per episode {results}")
    return 0


def train(cfg: TrainConfig) -> int:
    from robot_rl.rl.trainer import Trainer

    trainer = Trainer(cfg)
    try:
        run_dir = trainer.run()
    finally:
        trainer.close()
    best = (
        " and best/ (its best evaluation; re-evaluate before trusting it)" if cfg.keep_best else ""
    )
    console.print(f"run saved in {run_dir}: checkpoint/ (the last){best}, eval.csv, tb/")
    return 0


def evaluate(cfg: EvalConfig) -> int:
    from robot_rl.rl.envs import make_env
    from robot_rl.rl.trainer import SavedRun
    from robot_rl.video import check_video_path

    if cfg.video:
        check_video_path(cfg.video)
    run = SavedRun.load(cfg.ckpt, cfg.device)
    result = run.evaluate(cfg.episodes, cfg.seed, cfg.num_envs)
    train = run.config["train"]
    console.print(f"{train['task']} after {run.config['step']} env steps, {cfg.episodes} episodes:")
    console.print(f"  {eval_line(result)}")
    if cfg.video:
        env = make_env(train["task"], 1, train["obs"], cfg.device, train["env"])
        path = video_of(run.agent, lambda e: run.wrap(e, cfg.seed), env, cfg.video, cfg.seed)
        console.print(f"  video: {path}")
    return 0


def video_of(agent, wrap, env, path: str, seed: int, episodes: int = 3, episode_done=None):
    """Film ``agent`` for a few episodes in a one-world ``env`` seen through ``wrap``."""
    from robot_rl.rl.trainer import evaluate as run_eval
    from robot_rl.video import FrameRecorder

    recorder = FrameRecorder(env)
    wrapped = wrap(recorder)
    try:
        run_eval(agent, wrapped, episodes, seed, episode_done)
    finally:
        wrapped.close()
    return recorder.write(path)


def plot(cfg: PlotConfig) -> int:
    from robot_rl.rl.plot import plot_runs

    if not cfg.runs:
        raise ValueError("give one or more run directories")
    console.print(f"wrote {plot_runs(cfg.runs, cfg.out, mean_over_seeds=cfg.mean)}")
    return 0


def bc(cfg) -> int:
    from robot_rl.policies.train import train_bc

    path, result = train_bc(cfg)
    console.print(f"policy saved in {path}")
    if result:
        console.print(f"  {eval_line(result)}")
    return 0


def success_text(result: dict[str, float]) -> str:
    """Success with its 95% interval, or n/a where the task reports no success."""
    if result["success_rate"] != result["success_rate"]:
        return "n/a"
    return (
        f"{result['success_rate']:.1%} (95% CI {result['success_lo']:.1%}-"
        f"{result['success_hi']:.1%})"
    )


def eval_line(result: dict[str, float]) -> str:
    """One line: success (if the task reports it) and return, with 95% intervals."""
    return (
        f"success {success_text(result)}, "
        f"return {result['return_mean']:.2f} ± {result['return_ci95']:.2f}"
    )


def pipeline(cfg) -> int:
    from robot_rl.pipeline import run_pipeline

    run_pipeline(cfg)
    return 0
