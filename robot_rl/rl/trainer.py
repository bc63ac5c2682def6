"""The training loop: act, store, update, evaluate, log, checkpoint. It only orchestrates; the
learners, replay, losses and envs live in their own modules."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.tensorboard import SummaryWriter

from robot_rl.batched_env import BatchedEnv
from robot_rl.interrupts import defer_sigint
from robot_rl.rl.agents import (
    DEFAULT_NUM_ENVS,
    NEEDS_BASE,
    algo_from_dict,
    build_agent,
    wrap_env,
)
from robot_rl.rl.checkpoint import (
    load_flat_state,
    read_checkpoint,
    read_config,
    save_checkpoint,
)
from robot_rl.rl.demos import load_demos
from robot_rl.rl.envs import check_obs_shapes, make_env, obs_shapes, recorded_obs_shapes
from robot_rl.rl.fasttd3 import FastTD3Config, with_support
from robot_rl.rl.frozen_features import FrozenFeatureEnv, load_image_encoder
from robot_rl.rl.replay import ReplayBuffer, mixed_batch
from robot_rl.rl.residual import ResidualConfig


@dataclass
class TrainConfig:
    """Train an off-policy learner on a task (ours, or gym:<id>)."""

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"algo": "sac"}])
    algo: Any = None
    """Learner config group: sac, fasttd3, fasttd3_cpu, residual, dsrl."""
    task: str = "pick_cube"
    """reach, pick_cube, peg_insert, or gym:<env id> with a Box action space."""
    obs: str = "state"
    """Observation mode of our tasks: state, pixels, state+pixels."""
    env: dict[str, Any] = field(default_factory=dict)
    """Extra task settings, e.g. env.reward_type=sparse."""
    base: str = ""
    """Base policy directory (OUT/policy of robot-rl bc) for algo=residual|dsrl."""
    image_encoder: str = ""
    """Policy directory (OUT/policy of a pixel robot-rl bc run) whose conv encoders, frozen,
    turn each camera frame into features once: the learner then sees vectors and updates at
    state speed (SERL's frozen pretrained encoder; no DrQ shifts, the critic does not train
    it). Empty: the learner trains its own encoder through the critic."""
    demos: str = ""
    """Comma-separated demo stores from robot-rl collect; empty for none."""
    demo_fraction: float = 0.5
    """Share of each batch drawn from the demos."""
    total_steps: int = 20000
    """Env steps to train for (summed over parallel envs)."""
    num_envs: int = 0
    """Parallel envs; 0 picks the algo's default (sac 1, fasttd3 16)."""
    learning_starts: int = 1000
    """Random-action steps before learning (skipped when demos are given)."""
    eval_every: int = 2000
    """Evaluate and checkpoint every this many env steps."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic policy)."""
    replay_capacity: int = 200_000
    """Online replay slots (summed over envs), at most: a run allocates no more than it can fill
    in ``total_steps`` (a slot per step, one more per finished episode)."""
    seed: int = 0
    """Seed."""
    device: str = "auto"
    """auto (cuda if available), cpu, cuda."""
    out: str = ""
    """Run directory; default runs/<algo>-<task>-s<seed>."""
    resume: str = ""
    """Run directory to continue (checkpoint, optimizer state and replay)."""
    log_every: int = 500
    """Log scalars every this many env steps."""
    save_replay: bool = True
    """Save the replay with every checkpoint, so a resumed run keeps it."""
    keep_best: bool = True
    """Also keep RUN/best, the checkpoint with the best evaluation so far (success, then
    return; a later one wins a tie). Off-policy learners can drop between evaluations, and the
    last checkpoint may catch a dip; but a best of several eval_episodes-episode evaluations is
    biased upward, so re-evaluate it (robot-rl eval ckpt=RUN/best) before trusting its score."""
    progress: bool = True
    """Show a progress bar."""


BASE_DIR, ENCODER_DIR = "base", "image_encoder"  # copies kept in the run directory


def resolve_device(name: str) -> torch.device:
    """``auto`` (cuda where torch sees a GPU, else cpu), ``cpu``, ``cuda`` or ``cuda:<i>``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device={name} is not a device: use auto, cpu or cuda[:<i>]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={name}, but this torch ({torch.__version__}) sees no CUDA GPU: "
            "use device=cpu (or auto)"
        )
    return device


def replay_slots_per_env(capacity: int, total_steps: int, num_envs: int) -> int:
    """Slots per env stream: ``capacity`` shared out, but no more than the run can write (each
    step, plus the final observation of an episode ending on it, plus the guard slot)."""
    most = 2 * -(-total_steps // num_envs) + 2
    return max(2, min(capacity // num_envs, most))


def episode_quota(episodes: int, num_envs: int) -> list[int]:
    """How many of ``episodes`` each env runs in ``evaluate``: an even share, the remainder
    going to the first envs."""
    return [episodes // num_envs + (i < episodes % num_envs) for i in range(num_envs)]


def evaluate(
    agent, env: BatchedEnv, episodes: int, seed: int, episode_done=None
) -> dict[str, float]:
    """Deterministic rollouts of ``episodes`` episodes: success rate, mean return, and 95%
    intervals (Wilson for success, normal for return). Each env is given its share of the
    episodes up front, so short (often successful) episodes are not over-counted as they would
    be by taking the first ones to finish. ``episode_done(done)`` is told which envs ended
    after every step (for policies that keep per-episode state)."""
    n = env.num_envs
    quota = torch.tensor(episode_quota(episodes, n))
    obs, _ = env.reset(seed=seed)
    returns, successes = [], []
    running, finished = torch.zeros(n), torch.zeros(n, dtype=torch.long)
    while bool((finished < quota).any()):
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, deterministic=True))
        running += reward.cpu()
        done = (terminated | truncated).cpu()
        if episode_done is not None:
            episode_done(done)
        for i in torch.nonzero(done).flatten().tolist():
            if finished[i] < quota[i]:
                returns.append(float(running[i]))
                successes.append(float(info["success"][i]) if "success" in info else math.nan)
            finished[i] += 1
            running[i] = 0.0
    return summarize(np.array(returns), np.array(successes))


def summarize(returns: np.ndarray, successes: np.ndarray) -> dict[str, float]:
    n = len(returns)
    out = {
        "return_mean": float(returns.mean()),
        "return_ci95": float(1.96 * returns.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "success_rate": math.nan,
        "success_lo": math.nan,
        "success_hi": math.nan,
    }
    if not np.isnan(successes).any():
        p, z = successes.mean(), 1.96
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = max(0.0, centre - half), min(1.0, centre + half)  # no -0.0 from rounding
        out.update(success_rate=float(p), success_lo=lo, success_hi=hi)
    return out


def eval_score(result: dict[str, float]) -> tuple[float, float]:
    """What ``keep_best`` ranks evaluations by: success rate (0 where the task reports none),
    then mean return."""
    success = result["success_rate"]
    return (0.0 if math.isnan(success) else success), result["return_mean"]


COUNTS = ("total_steps", "eval_every", "eval_episodes", "log_every", "replay_capacity")
ALGO_COUNTS = ("utd", "updates_per_step", "policy_delay", "actor_every", "batch_size", "n_step")
"""Settings that are counts of at least 1 (those of the learner where it has them): at 0 a run
would go on without learning, evaluating or logging, and say nothing."""


def check_settings(cfg: TrainConfig) -> None:
    """Refuse settings out of their range, naming each."""
    counts = {k: getattr(cfg, k) for k in COUNTS}
    counts |= {f"algo.{k}": getattr(cfg.algo, k, None) for k in ALGO_COUNTS}
    wrong = {k: v for k, v in counts.items() if v is not None and v < 1}
    if wrong:
        raise ValueError(f"these settings must be at least 1: {wrong}")
    if cfg.num_envs < 0:
        raise ValueError(f"num_envs is a count (0: the learner's default), not {cfg.num_envs}")
    if not 0.0 <= cfg.demo_fraction <= 1.0:
        raise ValueError(
            f"demo_fraction is a share of each batch in [0, 1], not {cfg.demo_fraction}"
        )
    if not 0.0 < cfg.algo.gamma <= 1.0:
        raise ValueError(f"algo.gamma is a discount in (0, 1], not {cfg.algo.gamma}")
    if cfg.base and cfg.algo.name not in NEEDS_BASE:
        raise ValueError(
            f"base= is the frozen policy that algo={'|'.join(NEEDS_BASE)} fine-tunes; "
            f"algo={cfg.algo.name} trains from scratch: drop base="
        )


def check_run_dir(run_dir: Path, resuming: bool, total_steps: int) -> None:
    """A new run must not write over another: its checkpoints, best/ and replay would be
    replaced and its eval.csv and TensorBoard logs mixed with the new run's. A resumed one must
    have steps left to train."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir} is a file, not a run directory: choose another out=")
    if resuming:
        step = read_config(run_dir / "checkpoint")["step"]
        if total_steps < step:
            raise ValueError(
                f"{run_dir} is already at env step {step}: give a total_steps above it"
            )
        return
    if (run_dir / "checkpoint").exists() or (run_dir / "eval.csv").exists():
        raise ValueError(
            f"{run_dir} already holds a run: continue it with resume={run_dir}, or train into "
            "another out= (or delete it)"
        )


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.env = self.eval_env = None
        try:
            self._build(cfg)
        except BaseException:  # a refused config must not leave its worlds' threads running
            self.close()
            raise

    def _build(self, cfg: TrainConfig) -> None:
        check_settings(cfg)
        self.cfg = cfg
        algo = cfg.algo
        self.run_dir = Path(
            cfg.resume or cfg.out or f"runs/{algo.name}-{cfg.task.replace(':', '-')}-s{cfg.seed}"
        )
        check_run_dir(self.run_dir, bool(cfg.resume), cfg.total_steps)
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.num_envs = cfg.num_envs or DEFAULT_NUM_ENVS[algo.name]
        self.base = self._load_base()
        self.image_encoder = (
            load_image_encoder(cfg.image_encoder, self.device) if cfg.image_encoder else None
        )
        self.env = self._make_env(self.num_envs, cfg.seed)
        if isinstance(algo, ResidualConfig) and algo.base_only_dims is None:
            algo = dataclasses.replace(algo, base_only_dims=self.env.base_only_dims)
        if getattr(algo, "q_target_range", []) is None:  # residual and DSRL choose by task
            algo = dataclasses.replace(algo, q_target_range=self._success_return_range())
        if isinstance(algo, FastTD3Config):  # so does FastTD3's C51 support
            algo = with_support(algo, self._success_return_range())
        cfg.algo = algo  # what the env decided is recorded for the learner and the checkpoint
        self.eval_env = self._make_env(min(cfg.eval_episodes, 8), cfg.seed + 1)
        self.shapes = obs_shapes(self.env)
        self.action_dim = self.env.single_action_space.shape[0]
        self.agent = build_agent(
            algo, self.shapes, self.action_dim, self.num_envs, self.device, self.base
        )
        self.replay = ReplayBuffer(
            self.shapes,
            self.action_dim,
            self.num_envs,
            replay_slots_per_env(cfg.replay_capacity, cfg.total_steps, self.num_envs),
            algo.gamma,
            algo.n_step,
            self.device,
        )
        paths = [p for p in cfg.demos.split(",") if p]
        if paths and algo.name == "dsrl":
            raise ValueError(
                "algo=dsrl acts in the diffusion policy's noise space and demos carry no "
                "latents; train it without demos= (its base policy already holds them)"
            )
        relabel = getattr(self.env, "relabel", None)
        self.demo = (
            load_demos(
                paths,
                self.shapes,
                self.action_dim,
                algo.gamma,
                algo.n_step,
                self.device,
                self._demo_expectations(),
                relabel,
                recorded_obs_shapes(self.env),
            )
            if paths
            else None
        )
        if self.demo is not None:  # start the observation statistics from the demonstrations
            valid = self.demo.written[0]
            keys = self.agent.encoder.vector_keys
            self.agent.encoder.update_norm({k: self.demo.obs[k][0][valid] for k in keys})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        base = cfg.base if self.base is not None else ""
        for given, kept in ((base, BASE_DIR), (cfg.image_encoder, ENCODER_DIR)):
            kept = self.run_dir / kept  # a self-contained run: its checkpoints need these
            if given and Path(given).resolve() != kept.resolve():
                shutil.copytree(Path(given), kept, dirs_exist_ok=True)
        self.step = 0
        self.wall_offset = 0.0
        self.best_score: tuple[float, float] | None = None
        if cfg.resume:
            self._resume()

    def _make_env(self, num_envs: int, seed: int) -> BatchedEnv:
        env = make_env(self.cfg.task, num_envs, self.cfg.obs, str(self.device), self.cfg.env)
        try:
            return wrap_run_env(self.cfg.algo, env, self.base, self.image_encoder, seed)
        except BaseException:  # e.g. a base policy made for other observations
            env.close()
            raise

    def _load_base(self):
        if self.cfg.algo.name not in NEEDS_BASE:
            return None
        if not self.cfg.base:
            raise ValueError(
                f"algo={self.cfg.algo.name} fine-tunes a base policy: give base=PATH (the "
                "policy directory written by robot-rl bc)"
            )
        from robot_rl.policies import load_policy

        return load_policy(self.cfg.base, self.device)

    def _success_return_range(self) -> list[float]:
        """[0, 1] on our tasks with a sparse success reward that ends the episode (every return
        lies there), else [] (unknown): residual's and DSRL's TD-target clamp, FastTD3's support."""
        task = getattr(getattr(self.env, "runtime", None), "cfg", None)
        success_ends = task is not None and task.terminate_on_success
        sparse = success_ends and task.reward_type == "sparse"
        return [0.0, 1.0] if sparse else []

    def _demo_expectations(self) -> dict[str, Any]:
        """Recorded settings a demo store must share with the training env (ours only)."""
        runtime = getattr(self.env, "runtime", None)
        if runtime is None:
            return {}
        expect = {
            "task": runtime.cfg.name,
            "reward_type": runtime.cfg.reward_type,
            "terminate_on_success": runtime.cfg.terminate_on_success,
        }
        if runtime.cfg.reward_type == "dense":
            expect["success_bonus_discount"] = runtime.cfg.success_bonus_discount
        return expect

    # -- persistence --------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        cfg = dataclasses.asdict(self.cfg)
        cfg.pop("defaults", None)
        return {
            "train": cfg,
            "obs_shapes": {
                k: [list(s), str(d).removeprefix("torch.")] for k, (s, d) in self.shapes.items()
            },
            "action_dim": self.action_dim,
            "base": BASE_DIR if self.base is not None else "",
            "image_encoder": ENCODER_DIR if self.image_encoder is not None else "",
            "step": self.step,
            "wall_time": self.wall_offset + time.time() - self.start,
        }

    def checkpoint(self) -> None:
        save_checkpoint(self.run_dir / "checkpoint", self.agent, self.config_dict())
        if self.cfg.save_replay:
            self.replay.save(self.run_dir / "replay.safetensors")

    def _resume(self) -> None:
        tensors, config = read_checkpoint(self.run_dir / "checkpoint", str(self.device))
        check_obs_shapes(saved_obs_shapes(config), self.env, f"the checkpoint of {self.run_dir}")
        load_flat_state(self.agent, tensors, config["optimizers"])
        self.step, self.wall_offset = int(config["step"]), float(config["wall_time"])
        replay = self.run_dir / "replay.safetensors"
        if replay.exists():
            self.replay.load(replay)
        best = self.run_dir / "best" / "config.json"
        if best.exists():
            self.best_score = eval_score(json.loads(best.read_text())["eval"])

    # -- loop ---------------------------------------------------------------------------------
    def sample(self, batch_size: int) -> dict:
        if self.demo is None:
            return self.replay.sample(batch_size)
        n_demo = int(round(batch_size * self.cfg.demo_fraction))
        return mixed_batch(self.replay.sample(batch_size - n_demo), self.demo.sample(n_demo))

    def run(self) -> Path:
        """Train until ``total_steps``; evaluates, logs and checkpoints on the way."""
        cfg = self.cfg
        self.start = time.time()
        self.writer = SummaryWriter(str(self.run_dir / "tb"))
        self.recent: list[tuple[float, float]] = []  # (return, success) of recent episodes
        obs, _ = self.env.reset(seed=cfg.seed + self.step)
        self._check_finite(obs)
        self.ep_return = torch.zeros(self.num_envs, device=self.device)
        self.n_updates, last_log, last_eval, t_log = 0, self.step, self.step, time.time()
        metrics: dict[str, torch.Tensor] = {}
        ready = False
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
        ]
        with Progress(*columns, disable=not cfg.progress) as progress:
            bar = progress.add_task(
                f"{cfg.algo.name} {cfg.task}", total=cfg.total_steps, completed=self.step, stats=""
            )
            start_step = self.step
            try:
                while self.step < cfg.total_steps:
                    with defer_sigint():  # a step is stored and learned from whole, or not at all
                        learning = self.step >= cfg.learning_starts or self.demo is not None
                        obs = self._env_step(obs, learning)
                        # once every env stream holds a transition it keeps one: check until then
                        ready = ready or bool(self.replay.valid_starts().any(1).all())
                        if learning and ready:
                            metrics = self.agent.learn(self.sample)
                            self.n_updates += self.agent.updates_per_learn
                            self._check_losses(metrics)
                    if self.step - last_log >= cfg.log_every:
                        steps_per_s = (self.step - last_log) / (time.time() - t_log)
                        stats = self._log(metrics, steps_per_s, time.time() - t_log)
                        progress.update(bar, stats=stats + self._last_eval_text)
                        last_log, t_log, self.n_updates = self.step, time.time(), 0
                    if self.step - last_eval >= cfg.eval_every or self.step >= cfg.total_steps:
                        self._evaluate_and_checkpoint()
                        last_eval = self.step
                    progress.update(bar, completed=self.step)
            except KeyboardInterrupt:
                if self.step == start_step:
                    raise KeyboardInterrupt(f"nothing trained since env step {self.step}") from None
                with defer_sigint():
                    self.checkpoint()
                raise KeyboardInterrupt(
                    f"checkpoint saved at env step {self.step} in {self.run_dir}; "
                    f"resume={self.run_dir} continues from there"
                ) from None
            finally:
                self.writer.close()
        return self.run_dir

    def _env_step(self, obs: dict[str, torch.Tensor], learning: bool) -> dict[str, torch.Tensor]:
        """Act in all envs, store the transitions; returns the next observations."""
        if learning:
            action = self.agent.act(obs)
        elif hasattr(self.env, "random_action"):  # e.g. the base policy alone when fine-tuning
            action = self.env.random_action()
        else:
            action = torch.rand(self.num_envs, self.action_dim, device=self.device) * 2 - 1
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self._check_finite(next_obs, reward, info["final_obs"])
        self.replay.add(obs, action, reward, terminated, truncated, info["final_obs"])
        self.agent.encoder.update_norm(obs)
        done = terminated | truncated
        self.agent.episode_done(done)
        self.ep_return += reward
        for i in torch.nonzero(done).flatten().tolist():
            success = float(info["success"][i]) if "success" in info else math.nan
            self.recent = (self.recent + [(float(self.ep_return[i]), success)])[-20:]
            self.ep_return[i] = 0.0
        self.step += int(info.get("env_steps", self.num_envs))
        return next_obs

    def _log(self, metrics: dict[str, torch.Tensor], steps_per_s: float, seconds: float) -> str:
        """Scalars to TensorBoard; returns the progress bar's headline text."""
        for k, v in metrics.items():
            self.writer.add_scalar(k, float(v), self.step)
        self.writer.add_scalar("perf/env_steps_per_s", steps_per_s, self.step)
        updates_per_s = self.n_updates / seconds
        self.writer.add_scalar("perf/updates_per_s", updates_per_s, self.step)
        stats = f"{steps_per_s:.0f} sps | {updates_per_s:.0f} updates/s"
        if self.recent:
            returns, successes = np.mean(self.recent, axis=0)
            self.writer.add_scalar("train/return", returns, self.step)
            self.writer.add_scalar("train/success", successes, self.step)
            stats += f" | return {returns:.1f}"
            if not math.isnan(successes):  # the task reports success
                stats += f" success {successes:.0%}"
        return stats

    def _evaluate_and_checkpoint(self) -> None:
        cfg = self.cfg
        result = evaluate(self.agent, self.eval_env, cfg.eval_episodes, cfg.seed + 10_000)
        wall = self.wall_offset + time.time() - self.start
        for k, v in result.items():
            self.writer.add_scalar(f"eval/{k}", v, self.step)
        eval_file = self.run_dir / "eval.csv"
        new_file = not eval_file.exists()
        with eval_file.open("a", newline="") as fh:
            out = csv.writer(fh)
            if new_file:
                out.writerow(["env_step", "wall_time", "success_rate", "return_mean"])
            out.writerow([self.step, f"{wall:.1f}", result["success_rate"], result["return_mean"]])
        self._last_eval_text = (
            f" | eval success {result['success_rate']:.0%} return {result['return_mean']:.1f}"
        )
        with defer_sigint():  # the evaluation may be interrupted, its checkpoints not
            self.checkpoint()
            score = eval_score(result)
            if cfg.keep_best and (self.best_score is None or score >= self.best_score):
                self.best_score = score
                save_checkpoint(
                    self.run_dir / "best", self.agent, {**self.config_dict(), "eval": result}
                )

    _last_eval_text = ""

    def _check_finite(
        self,
        obs: dict[str, torch.Tensor],
        reward: torch.Tensor | None = None,
        final_obs: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Stop, naming the first non-finite entry and the env step, before anything of it is
        stored; one device sync when all is finite."""
        named = {f"observation {k!r}": v for k, v in obs.items()}
        named.update({f"final observation {k!r}": v for k, v in (final_obs or {}).items()})
        named = {k: v for k, v in named.items() if v.is_floating_point()}
        if reward is not None:
            named["reward"] = reward
        finite = {k: torch.isfinite(v).all() for k, v in named.items()}
        if not finite or bool(torch.stack(list(finite.values())).all()):
            return
        what = next(k for k, ok in finite.items() if not bool(ok))
        raise FloatingPointError(
            f"non-finite {what} at env step {self.step}; stopping instead of training on it"
        )

    def _check_losses(self, metrics: dict[str, torch.Tensor]) -> None:
        losses = {k: v for k, v in metrics.items() if k.startswith("loss/")}
        if not losses or bool(torch.isfinite(torch.stack(list(losses.values()))).all()):
            return  # one device sync per learn call, not one per loss
        key, value = next((k, v) for k, v in losses.items() if not bool(torch.isfinite(v)))
        raise FloatingPointError(f"{key} became {float(value)} at env step {self.step}")

    def close(self) -> None:
        for env in (self.env, self.eval_env):
            if env is not None:
                env.close()


def wrap_run_env(algo, env: BatchedEnv, base=None, image_encoder=None, seed: int = 0):
    """A task env as a run's learner sees it: through its base policy if any, then with camera
    frames as frozen encoder features if it has an image encoder."""
    env = wrap_env(algo, env, base, seed)
    return FrozenFeatureEnv(env, image_encoder) if image_encoder is not None else env


def saved_obs_shapes(config: dict) -> dict[str, list[int]]:
    """The observation shapes a checkpoint's agent was built for, key -> shape."""
    return {k: shape for k, (shape, _) in config["obs_shapes"].items()}


def load_agent(checkpoint: str | Path, device: str = "cpu"):
    """(agent, config, base policy or None) from a checkpoint directory, ready to act."""
    tensors, config = read_checkpoint(checkpoint, device)
    train = config["train"]
    algo = algo_from_dict(train["algo"])
    base = None
    if config.get("base"):
        from robot_rl.policies import load_policy

        base = load_policy(Path(checkpoint).parent / config["base"], device)
    shapes = {k: (tuple(s), getattr(torch, d)) for k, (s, d) in config["obs_shapes"].items()}
    num_envs = train["num_envs"] or DEFAULT_NUM_ENVS[algo.name]
    agent = build_agent(algo, shapes, config["action_dim"], num_envs, torch.device(device), base)
    load_flat_state(agent, tensors, config["optimizers"], optimizers=False)
    agent.eval()
    return agent, config, base


@dataclass
class SavedRun:
    """A checkpoint loaded to act: the agent, its run config, and its env as it was trained."""

    agent: torch.nn.Module
    config: dict[str, Any]
    base: Any
    device: str
    image_encoder: Any = None

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> SavedRun:
        """``path``: a checkpoint directory or a run directory holding ``checkpoint/``."""
        path = Path(path)
        if (path / "checkpoint").is_dir():
            path = path / "checkpoint"
        agent, config, base = load_agent(path, device)
        encoder = config.get("image_encoder")
        encoder = load_image_encoder(path.parent / encoder, device) if encoder else None
        return cls(agent, config, base, device, encoder)

    def make_env(self, num_envs: int, seed: int = 0) -> BatchedEnv:
        """The training task with ``num_envs`` worlds, as the run saw it (``wrap_run_env``)."""
        from robot_rl.rl.envs import make_env

        train = self.config["train"]
        env = make_env(train["task"], num_envs, train["obs"], self.device, train["env"])
        return self.wrap(env, seed)

    def wrap(self, env: BatchedEnv, seed: int = 0) -> BatchedEnv:
        algo = algo_from_dict(self.config["train"]["algo"])
        env = wrap_run_env(algo, env, self.base, self.image_encoder, seed)
        try:
            check_obs_shapes(saved_obs_shapes(self.config), env, "this checkpoint")
        except ValueError:
            env.close()
            raise
        return env

    def evaluate(self, episodes: int = 50, seed: int = 12345, num_envs: int = 8) -> dict:
        if episodes < 1 or num_envs < 1:
            raise ValueError(f"evaluate at least 1 episode in 1 env, not {episodes} in {num_envs}")
        env = self.make_env(num_envs, seed)
        try:
            return evaluate(self.agent, env, episodes, seed)
        finally:
            env.close()
