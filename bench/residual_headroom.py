"""What a residual of a given size can do for a base policy on PegInsert: a fixed proportional
correction of the peg tip's xy offset from the hole, held within ``action_scale`` of the base's
action exactly as ``robot-rl train algo=residual`` holds its learned residual.

    .venv/bin/python bench/residual_headroom.py \
        --base bench_runs/bc-mlp-demos-peg_insert-20-sparse/policy --scales 0.05 0.1

The gain-0 rows are the base alone through the same wrapper. A learned residual at the same
``action_scale`` should reach at least what this hand-written one does; the difference is what
the learner leaves on the table.
"""

from __future__ import annotations

import argparse

import torch

from robot_rl.cli.commands import success_text
from robot_rl.policies.base import load_policy
from robot_rl.rl.agents import wrap_env
from robot_rl.rl.envs import make_env
from robot_rl.rl.residual import ResidualConfig
from robot_rl.rl.trainer import evaluate
from robot_rl.sim.tasks.peg_insert import PegInsertConfig


class XYServo:
    """Acts on ``ResidualEnv`` observations: base action plus -gain * (tip - hole)_xy in action
    units (metres / pos_scale) on the x and y commands; the env clips it to the residual bound."""

    def __init__(self, gain: float, pos_scale: float):
        self.gain, self.pos_scale = gain, pos_scale

    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        action = obs["base_action"].clone()
        tip_from_hole = obs["state"][:, -3:]  # PegInsert's last object features, (N, 3) m
        action[:, :2] -= self.gain * tip_from_hole[:, :2] / self.pos_scale
        return action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a robot-rl bc policy directory")
    parser.add_argument("--gains", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.05])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()

    base = load_policy(args.base)
    servo_pos_scale = PegInsertConfig().pos_scale
    print("| action_scale | gain | success (95% CI) | return |")
    print("|---|---|---|---|")
    for scale in args.scales:
        for gain in args.gains:
            env = wrap_env(
                ResidualConfig(action_scale=scale),
                make_env("peg_insert", 8, overrides={"reward_type": "sparse"}),
                base,
                args.seed,
            )
            try:
                result = evaluate(XYServo(gain, servo_pos_scale), env, args.episodes, args.seed)
            finally:
                env.close()
            print(f"| {scale} | {gain} | {success_text(result)} | {result['return_mean']:.2f} |")


if __name__ == "__main__":
    main()
