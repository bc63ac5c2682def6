"""Behaviour cloning from ``robot-rl collect`` stores: train a base policy with EMA weights, then
measure its success in the task the demonstrations came from."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.tensorboard import SummaryWriter

from robot_rl.data.sequences import ChunkDataset
from robot_rl.policies import POLICIES, BasePolicy
from robot_rl.policies.runner import ChunkRunner


@dataclass
class BCConfig:
    """Train a BC base policy (mlp or diffusion) from demonstrations, then evaluate it."""

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"policy": "diffusion"}])
    policy: Any = MISSING
    """Policy config group: mlp, diffusion; fields as policy.<name>=value."""
    demos: str = MISSING
    """Comma-separated demo stores from robot-rl collect."""
    steps: int = 6000
    """Gradient steps."""
    batch_size: int = 256
    """Batch size."""
    lr: float = 3e-4
    """AdamW learning rate (cosine decay to 0 over the run)."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    ema_decay: float = 0.995
    """EMA decay of the deployed weights (warmed up as (1 + step) / (10 + step))."""
    eval_episodes: int = 50
    """Episodes of the final evaluation (0 to skip)."""
    num_envs: int = 8
    """Parallel envs for evaluation."""
    seed: int = 0
    """Seed."""
    device: str = "auto"
    """auto (cuda if available), cpu, cuda."""
    out: str = ""
    """Output directory; default runs/bc-<policy>-<task>-s<seed>. The policy goes to OUT/policy."""
    progress: bool = True
    """Show a progress bar."""


RECIPE = ("steps", "batch_size", "lr", "weight_decay", "ema_decay", "seed")


def training_recipe(cfg: BCConfig) -> dict[str, Any]:
    """The settings that shape the trained weights besides the policy's own config and demos;
    saved with the policy as ``train``."""
    return {k: getattr(cfg, k) for k in RECIPE}


def policy_env_config(attrs: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(task, obs mode, task settings) a demo store was recorded with."""
    config = dict(attrs.get("config", {}))
    config.pop("name", None)
    return attrs["task"], attrs.get("obs_mode", "state"), config


def make_policy_env(attrs: dict[str, Any], num_envs: int, device: str):
    from robot_rl.rl.envs import make_env

    task, obs_mode, config = policy_env_config(attrs)
    config.pop("obs_mode", None)
    return make_env(task, num_envs, obs_mode, device, config)


def evaluate_policy(
    policy: BasePolicy, env, episodes: int, seed: int, runner_seed: int = 0
) -> dict[str, float]:
    """Success rate and return (95% intervals) of ``policy`` run with its chunk queue."""
    from robot_rl.rl.envs import check_obs_shapes
    from robot_rl.rl.trainer import evaluate

    check_obs_shapes(policy.obs_shapes, env, "the policy")
    runner = ChunkRunner(policy, env.num_envs, seed=runner_seed)
    return evaluate(runner, env, episodes, seed, episode_done=runner.episode_done)


def train_bc(cfg: BCConfig) -> tuple[Path, dict[str, float]]:
    from robot_rl.rl.trainer import resolve_device

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    paths = [p for p in cfg.demos.split(",") if p]
    data = ChunkDataset(paths, cfg.policy.obs_horizon, cfg.policy.action_horizon, device)
    policy_cls, _ = POLICIES[cfg.policy.name]
    policy: BasePolicy = policy_cls(cfg.policy, data.obs_shapes, data.action_dim).to(device)
    policy.fit_normalizer(data.obs)
    ema = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.steps, 1))
    task = data.attrs.get("task", "task")
    out = Path(cfg.out or f"runs/bc-{cfg.policy.name}-{task}-s{cfg.seed}")
    writer = SummaryWriter(str(out / "tb"))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    start = time.time()
    columns = [TextColumn("[bold]{task.description}"), BarColumn()]
    columns += [TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn()]
    columns += [TextColumn("{task.fields[stats]}")]
    with Progress(*columns, disable=not cfg.progress) as progress:
        bar = progress.add_task(f"bc {cfg.policy.name} {task}", total=cfg.steps, stats="")
        for step in range(cfg.steps):
            loss, metrics = policy.compute_loss(data.sample(cfg.batch_size, gen))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"BC loss became {float(loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            sched.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(policy.parameters()), 1 - decay)
                for b_ema, b in zip(ema.buffers(), policy.buffers(), strict=True):
                    b_ema.copy_(b)
            if step % 100 == 0 or step == cfg.steps - 1:
                for k, v in metrics.items():
                    writer.add_scalar(k, float(v), step)
                progress.update(
                    bar, completed=step + 1, stats=f"loss {float(metrics['loss/bc']):.4f}"
                )
        progress.update(bar, completed=cfg.steps)
    train_seconds = time.time() - start
    result: dict[str, float] = {}
    ema.eval()
    if cfg.eval_episodes:
        env = make_policy_env(data.attrs, min(cfg.num_envs, cfg.eval_episodes), str(device))
        try:
            result = evaluate_policy(ema, env, cfg.eval_episodes, cfg.seed + 10_000, cfg.seed)
        finally:
            env.close()
        for k, v in result.items():
            writer.add_scalar(f"eval/{k}", v, cfg.steps)
    writer.close()
    extra = {
        "demos": paths,
        "store_attrs": data.attrs,
        "episodes": data.num_episodes,
        "train_steps": cfg.steps,
        "train": training_recipe(cfg),
        "train_seconds": train_seconds,
        "eval": result,
    }
    ema.save(out / "policy", extra)
    return out / "policy", result
