"""The main job end to end on the simulation: scripted demos -> BC base policy -> its success ->
online fine-tuning (DSRL by default, residual as an option) -> success after -> curve, video and
a before/after table. Each stage is a ``robot-rl`` subcommand too; a stage whose output already
exists in ``out`` is reused (``fresh=true`` redoes everything)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


@dataclass
class PipelineConfig:
    """Demos -> BC base policy -> online fine-tuning -> before/after table, curve and video."""

    task: str = "pick_cube"
    """reach, pick_cube or peg_insert."""
    demos: int = 50
    """Scripted demonstrations to collect."""
    policy: str = "diffusion"
    """Base policy: diffusion or mlp (residual fine-tuning takes either, DSRL needs diffusion)."""
    bc_steps: int = 6000
    """BC gradient steps."""
    algo: str = "dsrl"
    """Fine-tuning learner: dsrl or residual."""
    finetune_steps: int = 20000
    """Env steps of online fine-tuning."""
    overrides: list[str] = field(default_factory=list)
    """Extra robot-rl train overrides for the fine-tuning stage, e.g. [algo.variant=sac]."""
    bc_overrides: list[str] = field(default_factory=list)
    """Extra robot-rl bc overrides, e.g. [policy.hidden=[512,512,512]]."""
    eval_episodes: int = 50
    """Episodes of each before/after evaluation (the same seeds for both)."""
    seed: int = 0
    """Seed of every stage."""
    out: str = "outputs/pipeline"
    """Directory for every stage's output."""
    fresh: bool = False
    """Redo every stage instead of reusing outputs found in ``out``."""
    progress: bool = True
    """Show progress bars."""


def _compose(command: str, overrides: list[str]):
    from robot_rl.cli.main import compose

    return compose(command, overrides)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    from robot_rl.cli.commands import success_text, video_of
    from robot_rl.data.collect import collect_episodes
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.policies import load_policy, read_policy_config
    from robot_rl.policies.runner import ChunkRunner
    from robot_rl.policies.train import evaluate_policy, train_bc
    from robot_rl.rl.envs import make_env
    from robot_rl.rl.plot import plot_runs
    from robot_rl.rl.trainer import SavedRun, Trainer
    from robot_rl.sim.registry import make_task, task_config
    from robot_rl.sim.tasks.base import TaskRuntime

    if cfg.algo not in ("dsrl", "residual"):
        raise ValueError(f"algo must be dsrl or residual, got {cfg.algo!r}")
    if cfg.algo == "dsrl" and cfg.policy != "diffusion":
        raise ValueError("algo=dsrl steers a diffusion policy: use policy=diffusion")
    out = Path(cfg.out)
    if cfg.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    env_settings = {"reward_type": "sparse"}  # success as reward, as on the real robot
    times: dict[str, float] = {}

    # 1. scripted demonstrations
    t0, demos = time.time(), out / "demos.zarr"
    have = 0
    if demos.exists():
        store = EpisodeStore(demos)
        _same(demos, "task", store.attrs.get("task"), cfg.task)
        have = store.num_episodes
    if have < cfg.demos:
        rt = TaskRuntime(make_task(cfg.task, task_config(cfg.task, **env_settings)), 8)
        try:
            collect_episodes(
                rt,
                lambda r, o: _expert(cfg.task)(r),
                cfg.demos - have,
                demos,
                cfg.seed + have,
                True,
                cfg.progress,
            )
        finally:
            rt.close()
    times["demos"] = time.time() - t0

    # 2-3. BC base policy and its success rate
    t0, base_dir = time.time(), out / "bc" / "policy"
    if not (base_dir / "policy.json").exists():
        bc_cfg = _compose(
            "bc",
            [
                f"policy={cfg.policy}",
                f"demos={demos}",
                f"steps={cfg.bc_steps}",
                "eval_episodes=0",
                f"seed={cfg.seed}",
                f"out={out / 'bc'}",
                f"progress={cfg.progress}",
                *cfg.bc_overrides,
            ],
        )
        train_bc(bc_cfg)
    times["bc"] = time.time() - t0
    _same(base_dir, "policy", read_policy_config(base_dir)["kind"], cfg.policy)
    base = load_policy(base_dir)
    eval_seed = cfg.seed + 50_000
    t0 = time.time()
    env = make_env(cfg.task, 8, "state", "cpu", env_settings)
    try:
        with _status(cfg, f"evaluating the base policy over {cfg.eval_episodes} episodes"):
            before = evaluate_policy(base, env, cfg.eval_episodes, eval_seed, cfg.seed)
    finally:
        env.close()
    console.print(f"base policy: success {success_text(before)}")
    times["eval before"] = time.time() - t0

    # 4. online fine-tuning
    t0, run_dir = time.time(), out / "finetune"
    train_cfg = _compose(
        "train",
        [
            f"algo={cfg.algo}",
            f"task={cfg.task}",
            f"base={base_dir}",
            "+env.reward_type=sparse",
            f"total_steps={cfg.finetune_steps}",
            f"seed={cfg.seed}",
            f"out={run_dir}",
            f"progress={cfg.progress}",
            "eval_every=1000",
            "eval_episodes=20",
            *(_plus_env(o) for o in cfg.overrides),
        ],
    )
    if cfg.algo == "residual":
        train_cfg = replace(train_cfg, demos=str(demos))
    done = (run_dir / "checkpoint" / "config.json").exists()
    if done:
        _same(run_dir, "algo", _run_config(run_dir)["train"]["algo"]["name"], cfg.algo)
    if done and _steps_done(run_dir) < cfg.finetune_steps:
        train_cfg = replace(train_cfg, resume=str(run_dir))
        done = False
    if not done:
        trainer = Trainer(train_cfg)
        try:
            trainer.run()
        finally:
            trainer.close()
    times["fine-tune"] = time.time() - t0

    # 5. success after fine-tuning, on the same episodes
    t0 = time.time()
    run = SavedRun.load(run_dir)
    with _status(cfg, f"evaluating the fine-tuned policy over {cfg.eval_episodes} episodes"):
        after = run.evaluate(cfg.eval_episodes, eval_seed)
    times["eval after"] = time.time() - t0

    # 6. curve and videos
    curve = plot_runs(
        [str(run_dir)], out / "learning_curve.png", {f"{cfg.policy} base policy": before}
    )
    one_env = lambda: make_env(cfg.task, 1, "state", "cpu", env_settings)  # noqa: E731
    runner = ChunkRunner(base, 1, seed=cfg.seed)
    wrap = lambda e: run.wrap(e, cfg.seed)  # noqa: E731
    with _status(cfg, "rendering videos"):
        video_of(
            runner,
            lambda e: e,
            one_env(),
            str(out / "base_policy.mp4"),
            eval_seed,
            2,
            runner.episode_done,
        )
        video_of(run.agent, wrap, one_env(), str(out / "finetuned_policy.mp4"), eval_seed, 2)
    summary = {
        "before": before,
        "after": after,
        "steps": run.config["step"],
        "times": times,
        "curve": str(curve),
        "run_dir": str(run_dir),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_table(cfg, summary)
    return summary


def _expert(task: str):
    from robot_rl.sim.experts import EXPERTS

    return EXPERTS[task]


def _plus_env(override: str) -> str:
    return f"+{override}" if override.startswith("env.") else override


def _status(cfg: PipelineConfig, text: str):
    return console.status(text) if cfg.progress else contextlib.nullcontext()


def _run_config(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "checkpoint" / "config.json").read_text())


def _steps_done(run_dir: Path) -> int:
    return int(_run_config(run_dir)["step"])


def _same(path: Path, key: str, found: Any, wanted: Any) -> None:
    """A reused stage output must match the settings of this run."""
    if found != wanted:
        raise ValueError(
            f"{path} holds {key}={found!r} but this run asks for {key}={wanted!r}; "
            "use another out= or fresh=true"
        )


def _print_table(cfg: PipelineConfig, s: dict[str, Any]) -> None:
    table = Table(
        title=f"{cfg.task}: {cfg.policy} base policy from {cfg.demos} demos, "
        f"fine-tuned with {cfg.algo} for {s['steps']} env steps"
    )
    for col in ("policy", f"success over {cfg.eval_episodes} episodes (95% CI)", "return"):
        table.add_column(col)
    from robot_rl.cli.commands import success_text

    for name, r in (("base (BC)", s["before"]), (f"fine-tuned ({cfg.algo})", s["after"])):
        table.add_row(name, success_text(r), f"{r['return_mean']:.2f} ± {r['return_ci95']:.2f}")
    console.print(table)
    console.print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in s["times"].items()))
    console.print(
        f"curve: {s['curve']}; videos: {cfg.out}/base_policy.mp4, "
        f"{cfg.out}/finetuned_policy.mp4; run: {s['run_dir']}"
    )
