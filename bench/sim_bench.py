"""Simulator benchmarks, printed as a table (not a test).

    .venv/bin/python bench/sim_bench.py [--quick] [--markdown]

Rows: single-env steps/s in state mode (each step = 100 physics ticks of the 1 kHz impedance
law) and its real-time factor; the batched env at N = 16 against gymnasium's SyncVectorEnv and
AsyncVectorEnv of the same env, in the same run; render fps for both 128x128 cameras; the
impedance law per tick; and the scripted experts' success over 50 seeded episodes.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import robot_rl.sim  # noqa: E402,F401
from robot_rl.control.impedance import ImpedanceConfig, impedance_torque  # noqa: E402
from robot_rl.sim import ENV_IDS  # noqa: E402
from robot_rl.sim.batched import MujocoBatchedEnv  # noqa: E402
from robot_rl.sim.experts import EXPERTS  # noqa: E402
from robot_rl.sim.registry import make_task  # noqa: E402
from robot_rl.sim.tasks.base import TaskRuntime  # noqa: E402

TASK = "pick_cube"


def timed(fn, steps: int, warmup: int = 3, repeats: int = 3) -> float:
    """Median over ``repeats`` blocks of the seconds per call of ``fn``, after ``warmup`` calls
    (the machines are shared and noisy)."""
    for _ in range(warmup):
        fn()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        blocks.append((time.perf_counter() - start) / steps)
    return float(np.median(blocks))


def single_env(steps: int) -> float:
    env = gym.make(ENV_IDS[TASK])
    env.reset(seed=0)
    action = np.zeros(7, np.float32)

    def step():
        if any(env.step(action)[2:4]):
            env.reset()

    per = timed(step, steps)
    env.close()
    return 1.0 / per


def vector_envs(num_envs: int, steps: int) -> dict[str, float]:
    rates = {}
    batched = MujocoBatchedEnv(TASK, num_envs)
    batched.reset(seed=0)
    act = torch.zeros(num_envs, 7)
    rates["robot_rl batched (threads)"] = num_envs / timed(lambda: batched.step(act), steps)
    batched.close()
    for name, cls in (
        ("gymnasium SyncVectorEnv", gym.vector.SyncVectorEnv),
        ("gymnasium AsyncVectorEnv", gym.vector.AsyncVectorEnv),
    ):
        env = cls([lambda: gym.make(ENV_IDS[TASK]) for _ in range(num_envs)])
        env.reset(seed=0)
        actions = np.zeros((num_envs, 7), np.float32)
        rates[name] = num_envs / timed(lambda env=env, a=actions: env.step(a), steps)
        env.close()
    return rates


def render_fps(steps: int, num_envs: int) -> dict[str, float]:
    out = {}
    for n in (1, num_envs):
        rt = TaskRuntime(make_task(TASK, obs_mode="pixels"), n)
        rt.reset_worlds(np.arange(n))
        per = timed(lambda rt=rt: rt.render(("front", "wrist"), 128), steps)
        out[f"render 2 cams 128x128, {n} world(s)"] = n / per
        rt.close()
    return out


def law_cost(batch: int, calls: int = 20000) -> float:
    cfg = ImpedanceConfig()
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(batch, 6, 7))
    pos, rot = rng.normal(size=(batch, 3)), np.tile(np.eye(3), (batch, 1, 1))
    q, qd, cor = rng.normal(size=(batch, 7)), rng.normal(size=(batch, 7)), np.zeros((batch, 7))
    quat_d, k = np.tile([1.0, 0, 0, 0], (batch, 1)), np.tile(cfg.default_stiffness(), (batch, 1))
    tau_prev = np.zeros((batch, 7))
    return timed(
        lambda: impedance_torque(cfg, jac, pos, rot, q, qd, cor, pos, quat_d, k, tau_prev),
        calls,
        warmup=10,
    )


def expert_success(task: str, episodes: int = 50) -> tuple[float, float]:
    rt = TaskRuntime(make_task(task), episodes)
    rt.seed(0)
    rt.reset_worlds(np.arange(episodes))
    done = np.zeros(episodes, bool)
    success = np.zeros(episodes, bool)
    lengths = np.zeros(episodes)
    while not done.all():
        _, terminated, truncated, info = rt.step(EXPERTS[task](rt))
        lengths[~done] += 1
        ended = (terminated | truncated) & ~done
        success[ended] = info["success"][ended]
        done |= ended
    rt.close()
    return success.mean(), lengths.mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (noisier)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    steps = 40 if args.quick else 200
    n = 16
    rows: list[tuple[str, str]] = []
    sps = single_env(steps)
    rows.append((f"single env, state ({TASK}), steps/s", f"{sps:.0f}"))
    rows.append(("  real-time factor (10 Hz policy, 1 kHz law)", f"{sps / 10:.1f}x"))
    rates = vector_envs(n, steps // 5)
    sync = rates["gymnasium SyncVectorEnv"]
    for name, rate in rates.items():
        rows.append((f"N={n} {name}, steps/s", f"{rate:.0f} ({rate / sync:.2f}x Sync)"))
    for name, fps in render_fps(steps // 10, n).items():
        rows.append((f"{name}, worlds/s", f"{fps:.0f}"))
    for batch in (1, n):
        cost = law_cost(batch)
        rows.append(
            (
                f"impedance law per tick, B={batch}",
                f"{cost * 1e6:.1f} us ({cost * 1e6 / batch:.2f} us/arm)",
            )
        )
    for task in ("reach", "pick_cube", "peg_insert"):
        rate, length = expert_success(task)
        rows.append(
            (
                f"expert success, {task} (50 seeded episodes)",
                f"{rate:.0%} (mean {length:.0f} steps)",
            )
        )
    if args.markdown:
        print("| benchmark | result |\n|---|---|")
        for name, value in rows:
            print(f"| {name.strip()} | {value} |")
        return
    table = Table(
        title=f"robot_rl simulator benchmarks ({os.cpu_count()} cores, torch {torch.__version__})"
    )
    table.add_column("benchmark")
    table.add_column("result", justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
