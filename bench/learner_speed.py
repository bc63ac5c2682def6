"""Wall-clock per 1k env steps of each learner while it trains, on the CPU or a GPU.

    .venv/bin/python bench/learner_speed.py                      # every learner, default device
    .venv/bin/python bench/learner_speed.py --learners rlpd dsrl_na --device cpu
    python bench/learner_speed.py --device cuda --learners rlpd --override algo.cuda_graph=off

Each learner trains on PickCube (sparse reward) as ``robot-rl train`` does, from the same demos
and diffusion base policy as ``bench/finetune.py`` (made in --out if missing; the
``rlpd_pixels_frozen`` row uses 20 rendered demos and the pixel BC encoder of
``bench/sample_efficiency.py --image-encoder bc``), for --steps env steps with no evaluation
until the end. The env steps/s that the trainer logs to TensorBoard
every --log-every env steps are read back; of the windows in which it learned, the first (it
includes compiling) is reported apart and the later ones give the steady rate (their median).
Evaluation time is not included; the fine-tuning tables' "s per 1k env steps" include it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

import torch
from finetune import METHODS
from sample_efficiency import base_policy, bc_image_encoder, ensure_demos
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robot_rl.cli.main import compose
from robot_rl.rl.trainer import Trainer, resolve_device

TASK = "pick_cube"
LEARN_CALLS = "perf/updates_per_s"  # the learner's gradient updates per second (0: not learning)


def learner_overrides(
    device: torch.device, demos: dict[int, str], base: Path, encoder: tuple[str, Path] | None
) -> dict:
    """name: (robot-rl train overrides, what the row says). ``encoder``: pixel demos and the
    pixel BC policy for the frozen-encoder row (made only when that row is asked for)."""
    # the paper's network and batch on a GPU, with HumanoidBench's 128 worlds; the CPU preset
    preset, worlds = ("fasttd3", 128) if device.type == "cuda" else ("fasttd3_cpu", 32)
    return {
        "rlpd": (["algo=sac", f"demos={demos[20]}"], "RLPD, 10 critics, UTD 4, state, demos"),
        "rlpd_pixels": (
            ["algo=sac", "obs=pixels", "replay_capacity=20000"],  # 2 GB of frames
            "RLPD, 10 critics, UTD 4, two 128x128 cameras",
        ),
        "rlpd_pixels_frozen": (
            ["algo=sac", "obs=pixels", f"demos={encoder[0]}", f"image_encoder={encoder[1]}"]
            if encoder
            else [],
            "RLPD, 10 critics, UTD 4, two 128x128 cameras through a frozen BC encoder, demos",
        ),
        "fasttd3": (
            [f"algo={preset}", f"num_envs={worlds}"],
            f"FastTD3, {preset} preset, {worlds} worlds",
        ),
        "residual": (
            [*METHODS["residual"], f"base={base}", f"demos={demos[50]}"],
            "residual TD3 on the diffusion base",
        ),
        "dsrl_sac": ([*METHODS["dsrl_sac"], f"base={base}"], "DSRL-SAC"),
        "dsrl_na": ([*METHODS["dsrl_na"], f"base={base}"], "DSRL-NA"),
    }


def scalars(run_dir: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def measure(overrides: list[str], steps: int, log_every: int, device: str, out: Path) -> dict:
    cfg = compose(
        "train",
        [
            *overrides,
            f"task={TASK}",
            "+env.reward_type=sparse",
            f"total_steps={steps}",
            f"log_every={log_every}",
            f"learning_starts={log_every}",  # without demos: one window of acting only
            f"eval_every={10 * steps}",
            "eval_episodes=1",
            "keep_best=false",
            "save_replay=false",
            "progress=false",
            f"device={device}",
            f"out={out}",
        ],
    )
    trainer = Trainer(cfg)
    try:
        trainer.run()
    finally:
        trainer.close()
    learning = [
        env
        for env, calls in zip(
            scalars(out, "perf/env_steps_per_s"), scalars(out, LEARN_CALLS), strict=True
        )
        if calls > 0
    ]
    steady = learning[1:] or [math.nan]
    return {
        "first_window_s": log_every / learning[0] if learning else math.nan,
        "s_per_1k": 1000 / statistics.median(steady),
        "windows": len(learning) - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", nargs="+", default=None, help="default: all")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=2000, help="env steps per learner")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument(
        "--fasttd3-steps", type=int, default=0, help="FastTD3's env steps (default: 40x --steps)"
    )
    parser.add_argument("--out", default="bench_runs", help="where demos and base policy live")
    parser.add_argument(
        "--override", nargs="*", default=[], help="robot-rl train overrides for every learner"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    out = Path(args.out)
    demos = {n: ensure_demos(TASK, n, out, "sparse") for n in (20, 50)}
    base, _ = base_policy(TASK, "diffusion", demos[50], out, 6000)
    names = args.learners or list(learner_overrides(device, demos, base, None))
    encoder = None
    if "rlpd_pixels_frozen" in names:
        pixel_demos = ensure_demos(TASK, 20, out, "sparse", "pixels")
        encoder = pixel_demos, bc_image_encoder(TASK, pixel_demos, out)[0]
    table = learner_overrides(device, demos, base, encoder)
    unknown = set(names) - set(table)
    if unknown:
        parser.error(f"unknown learners {sorted(unknown)}; choose from {list(table)}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    threads = torch.get_num_threads()
    print(
        f"| learner on {name} ({threads} CPU threads{', ' if args.override else ''}"
        f"{' '.join(args.override)}) | s per 1k env steps | env steps/s "
        "| first learning window (with compiling), s | steady windows |"
    )
    print("|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for learner in names:
            overrides, label = table[learner]
            fast = learner == "fasttd3"
            steps = (args.fasttd3_steps or 40 * args.steps) if fast else args.steps
            log_every = 40 * args.log_every if fast else args.log_every
            try:
                run_dir = Path(tmp) / learner
                r = measure([*overrides, *args.override], steps, log_every, str(device), run_dir)
            except Exception as exc:  # one learner failing must not hide the others' rows
                print(f"| {label} | failed: {type(exc).__name__}: {exc} | | | |", flush=True)
                continue
            print(
                f"| {label} | {r['s_per_1k']:.1f} | {1000 / r['s_per_1k']:.0f} "
                f"| {r['first_window_s']:.0f} | {r['windows']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
