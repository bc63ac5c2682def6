"""Sample efficiency: learning curves of RLPD from demos, SAC without demos and SB3 SAC.

    .venv/bin/python bench/sample_efficiency.py --task peg_insert --steps 20000 --seeds 0 1 2
    .venv/bin/python bench/sample_efficiency.py --task gym:Pendulum-v1 --methods sac --steps 10000 \
        --threshold -200
    .venv/bin/python bench/sample_efficiency.py --task reach --methods fasttd3 --steps 60000
    .venv/bin/python bench/sample_efficiency.py --task pick_cube --methods fasttd3_demos \
        --steps 60000 --eval-every 5000      # FastTD3 with half of each batch from 20 demos
    .venv/bin/python bench/sample_efficiency.py --task pick_cube --methods fasttd3 --steps 500000 \
        --reward dense --eval-every 20000 --env-set action_mode=position \
        success_bonus_discount=0.99 --algo-set preactivation_l2=0.01 preactivation_bound=2.0 \
        --tag=-pos-pl2b2-g99      # from the reward alone: 4-D actions, the README's recipe
    python bench/sample_efficiency.py --task reach --methods fasttd3_gpu --algo-set \
        batch_size=32768 --steps 400000 --eval-every 20000 --reward dense     # on a GPU
    .venv/bin/python bench/sample_efficiency.py --task pick_cube --obs pixels --methods rlpd
    .venv/bin/python bench/sample_efficiency.py --task pick_cube --obs pixels --methods rlpd \
        --image-encoder bc        # through the frozen encoder of a pixel BC policy (CPU-sized)
    .venv/bin/python bench/sample_efficiency.py --task peg_insert --methods rlpd --seeds 0 \
        --algo-set activation=relu --tag=-relu       # a variant, in its own run directories

Each run is a normal ``robot-rl train`` run directory under --out; the table gives, per method,
the mean final success (or return) over seeds and the env steps at which the mean curve first
reaches the threshold; a PNG of all curves is written with ``robot-rl plot``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np

from robot_rl.rl.agents import PRESETS
from robot_rl.rl.plot import plot_runs, seed_mean
from robot_rl.rl.sac import SACConfig
from robot_rl.rl.trainer import TrainConfig, Trainer

METHODS = {
    "rlpd": dict(algo=SACConfig(), demos=True, num_envs=1),
    "sac": dict(algo=SACConfig(num_critics=2, critic_subset=2, utd=1), demos=False, num_envs=1),
    "fasttd3": dict(algo=PRESETS["fasttd3_cpu"], demos=False, num_envs=32),
    # from the demos too (half of each batch, as RLPD) with the sparse success reward (the C51
    # support follows it to [0, 1]); 16 worlds and 8 updates per batched step give 0.5 updates
    # per env step (32 and 2 give 0.06, and learned nothing by 40k)
    "fasttd3_demos": dict(
        algo=dataclasses.replace(PRESETS["fasttd3_cpu"], updates_per_step=8),
        demos=True,
        num_envs=16,
    ),
    # the paper's networks with HumanoidBench's 128 worlds, for a GPU (set batch_size=32768 there)
    "fasttd3_gpu": dict(algo=PRESETS["fasttd3"], demos=False, num_envs=128),
}


CHECKPOINT_EVALS = {"checkpoint": "final_eval.json", "best": "best_eval.json"}


def checkpoint_success(run_dir: Path, which: str = "checkpoint", episodes: int = 50) -> float:
    """Success of a run's last (``checkpoint``) or best-evaluated (``best``) checkpoint over
    ``episodes`` fresh episodes (``robot-rl eval``'s evaluation), cached in the run directory;
    NaN for runs without one (SB3, or runs from before the best checkpoint was kept)."""
    import json

    from robot_rl.rl.trainer import SavedRun

    cache = run_dir / CHECKPOINT_EVALS[which]
    if not cache.exists():
        if not (run_dir / which).is_dir():
            return float("nan")
        result = SavedRun.load(run_dir / which).evaluate(episodes)
        cache.write_text(json.dumps({"episodes": episodes, **result}))
    return json.loads(cache.read_text())["success_rate"]


def final_column(dirs: list[Path], which: str = "checkpoint") -> str:
    """Per-seed success of the last (or best) checkpoint over 50 episodes and their mean, as a
    table cell."""
    finals = [checkpoint_success(d, which) for d in dirs]
    if any(np.isnan(finals)):
        return "-"
    return ", ".join(f"{f:.0%}" for f in finals) + f" (mean {np.mean(finals):.0%})"


def parse_setting(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE parsed as JSON where it can be (numbers, lists), else a string."""
    import json

    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def ensure_demos(
    task: str,
    episodes: int,
    out: Path,
    reward: str,
    obs: str = "state",
    env_set: dict | None = None,
) -> str:
    """The scripted demos of ``task`` (with task settings ``env_set``), recorded once."""
    mode = "" if obs == "state" else f"-{obs}"
    env_set = env_set or {}
    mode += "".join(f"-{k}={v}" for k, v in sorted(env_set.items()))
    path = out / f"demos-{task}-{episodes}-{reward}{mode}.zarr"
    if not path.exists():
        from robot_rl.data.collect import collect_episodes
        from robot_rl.sim.experts import EXPERTS
        from robot_rl.sim.registry import make_task
        from robot_rl.sim.tasks.base import TaskRuntime

        rt = TaskRuntime(make_task(task, reward_type=reward, obs_mode=obs, **env_set), 8)
        collect_episodes(
            rt, lambda r, o: EXPERTS[task](r), episodes, str(path), 0, show_progress=False
        )
        rt.close()
    return str(path)


def base_policy(
    task: str, kind: str, demos: str, out: Path, steps: int, extra: tuple[str, ...] = ()
) -> tuple[Path, dict]:
    """A ``robot-rl bc`` policy trained on ``demos`` and its evaluation; ``extra``: more
    ``robot-rl bc`` overrides. An existing policy of the same name is reused only if it was
    trained with the same recipe (steps, batch, learning rate, ...); otherwise a clear error."""
    import json

    from robot_rl.cli.main import compose
    from robot_rl.policies.train import train_bc, training_recipe

    run = out / f"bc-{kind}-{Path(demos).stem}"
    policy = run / "policy"
    cfg = compose("bc", [f"policy={kind}", f"demos={demos}", f"steps={steps}", *extra])
    cfg.out, cfg.progress = str(run), False
    if not (policy / "policy.json").exists():
        train_bc(cfg)
    saved = json.loads((policy / "policy.json").read_text())
    have = saved.get("train", {"steps": saved.get("train_steps")})  # older policies: steps only
    wanted = training_recipe(cfg)
    differ = {k: (v, wanted[k]) for k, v in have.items() if k in wanted and v != wanted[k]}
    if differ:
        text = ", ".join(f"{k} {old} (asked: {new})" for k, (old, new) in differ.items())
        raise ValueError(
            f"{policy} was trained with {text}; delete {run} to retrain it, or use another --out"
        )
    return policy, saved["eval"]


def bc_image_encoder(
    task: str, pixel_demos: str, out: Path, steps: int = 3000, batch: int = 64
) -> tuple[Path, dict]:
    """The pixel BC-MLP whose conv encoders a frozen-encoder run uses (``image_encoder=``), and
    its evaluation. A batch of 64 keeps it ~10 minutes on two CPU cores."""
    return base_policy(task, "mlp", pixel_demos, out, steps, (f"batch_size={batch}",))


def sb3_run(
    task: str, steps: int, seed: int, run_dir: Path, eval_every: int, env_set: dict
) -> None:
    """SB3 SAC (2 critics, 256x256) with the same evaluation, written as eval.csv."""
    import time

    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC as SB3SAC

    from robot_rl.rl.envs import make_env
    from robot_rl.rl.trainer import evaluate

    env_id = task[4:] if task.startswith("gym:") else None
    if env_id:
        env = gym.make(env_id)
    else:
        import robot_rl.sim  # noqa: F401

        env = gym.wrappers.FlattenObservation(gym.make(robot_rl.sim.ENV_IDS[task], **env_set))
    model = SB3SAC(
        "MlpPolicy", env, seed=seed, verbose=0, device="cpu", policy_kwargs={"net_arch": [256, 256]}
    )
    eval_env = make_env(task, 8, overrides=None if env_id else env_set)
    low, high = env.action_space.low, env.action_space.high

    class Policy:
        def act(self, obs, deterministic=True):
            flat = np.concatenate([obs[k].numpy() for k in sorted(obs)], -1)
            a, _ = model.predict(flat, deterministic=True)
            return torch.as_tensor(2 * (a - low) / (high - low) - 1, dtype=torch.float32)

    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with (run_dir / "eval.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["env_step", "wall_time", "success_rate", "return_mean"])
        for done in range(eval_every, steps + 1, eval_every):
            model.learn(eval_every, reset_num_timesteps=False)
            r = evaluate(Policy(), eval_env, 10, seed + 10_000)
            out.writerow([done, f"{time.time() - start:.1f}", r["success_rate"], r["return_mean"]])
            fh.flush()
    eval_env.close()


def mean_curve_row(dirs: list[Path], metric: str, threshold: float) -> dict:
    """Over seeds: the final mean ``metric``, the env steps and wall-clock at which the mean
    curve first reaches ``threshold``, and seconds per 1k env steps."""
    curves = seed_mean(dirs)
    mean, walls, steps = curves[metric], curves["wall_time"], curves["env_step"]
    hit = np.flatnonzero(mean >= threshold)
    return {
        "final": mean[-1],
        "reach": f"{steps[hit[0]]:.0f}" if len(hit) else f"not within {steps[-1]:.0f}",
        "wall": f"{walls[hit[0]]:.0f}" if len(hit) else "-",
        "s_per_1k": 1000 * walls[-1] / steps[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="peg_insert")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["rlpd", "sac", "sb3"])
    parser.add_argument("--demos", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--out", default="bench_runs")
    parser.add_argument(
        "--reward", default="sparse", help="reward_type of our tasks (SERL: sparse)"
    )
    parser.add_argument("--obs", default="state", help="state, pixels or state+pixels (ours)")
    parser.add_argument(
        "--algo-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override algo settings of our methods, e.g. activation=relu utd=2",
    )
    parser.add_argument(
        "--env-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="task settings of our tasks (demos included), e.g. action_mode=position",
    )
    parser.add_argument(
        "--tag", default="", help="suffix of the run directories of a variant, e.g. --tag=-relu"
    )
    parser.add_argument(
        "--image-encoder",
        default="",
        help="pixels through a frozen encoder: a pixel policy directory, or 'bc' to train a "
        "BC-MLP on the pixel demos first (run directories get -frozen)",
    )
    parser.add_argument(
        "--num-envs", type=int, default=0, help="batched worlds of our methods (0: the method's)"
    )
    parser.add_argument("--encoder-bc-steps", type=int, default=3000)
    parser.add_argument("--encoder-bc-batch", type=int, default=64)
    args = parser.parse_args()
    if args.obs != "state" and "sb3" in args.methods:
        parser.error("the SB3 baseline runs from state only")
    if args.image_encoder and args.obs == "state":
        parser.error("--image-encoder needs --obs pixels or state+pixels")
    out = Path(args.out)
    env_set = dict(parse_setting(kv) for kv in args.env_set)
    encoder = args.image_encoder
    if encoder == "bc":
        demos = ensure_demos(args.task, args.demos, out, args.reward, args.obs, env_set)
        policy, bc_eval = bc_image_encoder(
            args.task, demos, out, args.encoder_bc_steps, args.encoder_bc_batch
        )
        encoder = str(policy)
        print(f"image encoder: {policy}, its BC policy's success {bc_eval['success_rate']:.0%}")
    mode = ("" if args.obs == "state" else f"-{args.obs}") + ("-frozen" if encoder else "")
    runs: dict[str, list[Path]] = {}
    for method in args.methods:
        for seed in args.seeds:
            name = f"{method}-{args.task.replace(':', '-')}{mode}{args.tag}-s{seed}"
            run_dir = out / name
            runs.setdefault(method, []).append(run_dir)
            if (run_dir / "eval.csv").exists():
                continue  # finished earlier; rerun by deleting it
            if method == "sb3":
                task_set = {"reward_type": args.reward, **env_set}
                sb3_run(args.task, args.steps, seed, run_dir, args.eval_every, task_set)
                continue
            spec = METHODS[method]
            ours = not args.task.startswith("gym:")
            demos = (
                ensure_demos(args.task, args.demos, out, args.reward, args.obs, env_set)
                if spec["demos"]
                else ""
            )
            settings = dict(parse_setting(kv) for kv in args.algo_set)
            algo = dataclasses.replace(spec["algo"], **settings)
            cfg = TrainConfig(
                algo=algo,
                env={"reward_type": args.reward, **env_set} if ours else {},
                task=args.task,
                obs=args.obs,
                demos=demos,
                image_encoder=encoder,
                seed=seed,
                num_envs=args.num_envs or spec["num_envs"],
                total_steps=args.steps,
                eval_every=args.eval_every,
                out=str(run_dir),
                progress=False,
            )
            trainer = Trainer(cfg)
            try:
                trainer.run()
            finally:
                trainer.close()
    metric = "return_mean" if args.task.startswith("gym:") else "success_rate"
    print(
        f"| {args.task}: method | seeds | final {metric} | env steps to mean {metric} >= "
        f"{args.threshold} | wall-clock s to it | env steps/s | final success, 50 episodes "
        "| best checkpoint, 50 episodes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, dirs in runs.items():
        row = mean_curve_row(dirs, metric, args.threshold)
        rate = 1000 / row["s_per_1k"]
        print(
            f"| {method} | {len(dirs)} | {row['final']:.2f} | {row['reach']} | {row['wall']} "
            f"| {rate:.0f} | {final_column(dirs) if metric == 'success_rate' else '-'} "
            f"| {final_column(dirs, 'best') if metric == 'success_rate' else '-'} |"
        )
    png = plot_runs(
        [str(d) for dirs in runs.values() for d in dirs],
        out / f"curves-{args.task.replace(':', '-')}{mode}{args.tag}.png",
        mean_over_seeds=True,
    )
    print(f"curves: {png}")


if __name__ == "__main__":
    main()
