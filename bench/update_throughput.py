"""SAC update throughput: ours against Stable-Baselines3 SAC, same machine, same run.

    .venv/bin/python bench/update_throughput.py [--updates 500] [--device cpu|cuda]
    python bench/update_throughput.py --device cuda --modes "eager fp32" "compiled bf16" \
        "compiled bf16 CUDA graph" --fasttd3-batch 32768   # a GPU; the paper's FastTD3 batch

Identical settings for the comparison: MLP 256x256 with relu (SB3's), batch 256, 2 critics, one
critic, actor and temperature step per update, state observations (Pendulum-v1 sized: 3-D obs,
1-D action). Rows marked tanh use our default activation instead (SERL's).
Ours runs in each of its modes: eager fp32 (as SB3), compiled fp32, compiled with bf16
hidden matmuls where the device does bf16 natively (the ``auto`` default there), and on CUDA
that again replayed as one CUDA graph per update (the ``auto`` default there). Also our RLPD
(10 critics, random subset of 2) and FastTD3 updates/s. Compile time is measured apart.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch

from robot_rl.rl.acceleration import native_bf16
from robot_rl.rl.fasttd3 import FastTD3, FastTD3Config
from robot_rl.rl.replay import ReplayBuffer
from robot_rl.rl.sac import SAC, SACConfig


def fill(buffer: ReplayBuffer, obs_dim: int, action_dim: int, steps: int) -> None:
    n = buffer.num_envs
    for t in range(steps):
        obs = {"state": torch.randn(n, obs_dim)}
        done = torch.full((n,), t % 200 == 199)
        buffer.add(
            obs,
            torch.rand(n, action_dim) * 2 - 1,
            torch.randn(n),
            torch.zeros(n, dtype=torch.bool),
            done,
            {"state": torch.randn(n, obs_dim)},
        )


def ours_updates_per_s(agent, buffer, updates: int, batch: int, device) -> tuple[float, float]:
    """(updates/s, seconds of the first 20 updates, which include compiling)."""

    def one():
        agent.update(buffer.sample(batch), update_actor=True)

    start = time.perf_counter()
    for _ in range(20):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(updates):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return updates / (time.perf_counter() - start), warmup


def sb3_updates_per_s(updates: int, device: str) -> float:
    from stable_baselines3 import SAC as SB3SAC

    env = gym.make("Pendulum-v1")
    model = SB3SAC(
        "MlpPolicy",
        env,
        batch_size=256,
        learning_starts=0,
        device=device,
        policy_kwargs={"net_arch": [256, 256], "n_critics": 2},
        verbose=0,
    )
    model.learn(2000)  # fills the replay with real transitions
    model.train(gradient_steps=20, batch_size=256)
    start = time.perf_counter()
    model.train(gradient_steps=updates, batch_size=256)
    return updates / (time.perf_counter() - start)


MODES = {  # name: (compile, amp, cuda_graph)
    "eager fp32": ("off", "off", "off"),
    "compiled fp32": ("on", "off", "off"),
    "compiled bf16": ("on", "on", "off"),
    "compiled bf16 CUDA graph": ("on", "on", "on"),
}


def available(mode: tuple[str, str, str], device: torch.device) -> bool:
    _, amp, graph = mode
    return (amp == "off" or native_bf16(device)) and (graph == "off" or device.type == "cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODES), default=list(MODES), help="our modes to run"
    )
    parser.add_argument("--fasttd3-batch", type=int, default=4096)
    args = parser.parse_args()
    device = torch.device(args.device)
    modes = {k: v for k, v in MODES.items() if k in args.modes and available(v, device)}
    torch.manual_seed(0)
    obs_dim, action_dim = 3, 1
    shapes = {"state": ((obs_dim,), torch.float32)}
    rows = []
    sb3 = sb3_updates_per_s(args.updates, args.device)
    rows.append(("Stable-Baselines3 SAC, 2 critics, fp32", sb3, 0.0))
    fastest = list(modes)[-1]
    for name, critics in (("robot_rl SAC, 2 critics", 2), ("robot_rl RLPD, 10 critics", 10)):
        runs = [(mode, "relu") for mode in modes] + [(fastest, "tanh")]
        for mode, activation in runs:
            compile_mode, amp, graph = modes[mode]
            buffer = ReplayBuffer(shapes, action_dim, 1, 10_000, device=device)
            fill(buffer, obs_dim, action_dim, 2000)
            cfg = SACConfig(
                num_critics=critics,
                activation=activation,
                augment=False,
                compile=compile_mode,
                amp=amp,
                cuda_graph=graph,
            )
            agent = SAC(cfg, {"state": (obs_dim,)}, action_dim).to(device)
            rate, warmup = ours_updates_per_s(agent, buffer, args.updates, 256, device)
            rows.append((f"{name}, {mode}, {activation}", rate, warmup))
    for mode, (compile_mode, amp, graph) in modes.items():
        buffer = ReplayBuffer(shapes, action_dim, 16, 1000, n_step=3, device=device)
        fill(buffer, obs_dim, action_dim, 200)
        batch = args.fasttd3_batch
        cfg = FastTD3Config(batch_size=batch, compile=compile_mode, amp=amp, cuda_graph=graph)
        agent = FastTD3(cfg, {"state": (obs_dim,)}, action_dim, 16, device)
        rate, warmup = ours_updates_per_s(agent, buffer, max(20, args.updates // 10), batch, device)
        rows.append((f"robot_rl FastTD3, batch {batch}, C51 1024-512-256, {mode}", rate, warmup))
    threads = torch.get_num_threads()
    print(f"| update throughput on {device} ({threads} threads) | updates/s | vs SB3 | first 20 |")
    print("|---|---|---|---|")
    for name, rate, warmup in rows:
        print(f"| {name} | {rate:.0f} | {rate / sb3:.2f}x | {warmup:.1f} s |")


if __name__ == "__main__":
    main()
