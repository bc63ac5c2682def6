"""Base policies and online fine-tuning: BC success, then residual / DSRL-SAC / DSRL-NA curves.

    .venv/bin/python bench/finetune.py --task pick_cube --demos 20 50 --seeds 0 1 2
    .venv/bin/python bench/finetune.py --task peg_insert --methods residual dsrl_na --steps 20000
    .venv/bin/python bench/finetune.py --methods residual --base mlp --finetune-demos 20 \
        --override algo.actor_pessimism=2 --tag=-lcb      # a variant, in its own run directories
    .venv/bin/python bench/finetune.py --task peg_insert --demos 20 --policies mlp --base mlp \
        --finetune-demos 20 --methods residual --reward dense --override algo.actor_lr=1e-4 \
        --tag=-dense-lr4                                  # fine-tuning on the shaped reward

1. Trains a BC-MLP and a diffusion base policy per demo count (``robot-rl bc``) and evaluates
   each over 50 episodes.
2. Fine-tunes the base chosen by --base (diffusion by default, from --finetune-demos demos) with
   each method and seed for --steps env steps (``robot-rl train``), evaluating every 1000.
3. Prints markdown tables (base success; per method: final success, env steps and wall-clock to
   a mean success >= --threshold, wall-clock per 1k env steps) and one PNG with every curve,
   RLPD-from-demos runs of ``bench/sample_efficiency.py`` in --out included if present.

Runs are ordinary run directories under --out and are reused when they exist (delete to redo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sample_efficiency import base_policy, ensure_demos, final_column, mean_curve_row

from robot_rl.cli.commands import success_text
from robot_rl.cli.main import compose
from robot_rl.rl.plot import plot_runs
from robot_rl.rl.trainer import Trainer

METHODS = {
    "residual": ["algo=residual"],
    "dsrl_sac": ["algo=dsrl", "algo.variant=sac"],
    "dsrl_na": ["algo=dsrl", "algo.variant=na"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pick_cube")
    parser.add_argument("--demos", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--policies", nargs="+", default=["mlp", "diffusion"])
    parser.add_argument("--bc-steps", type=int, default=6000)
    parser.add_argument("--base", default="diffusion", help="base policy kind to fine-tune")
    parser.add_argument("--finetune-demos", type=int, default=50)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument(
        "--reward",
        default="sparse",
        choices=["sparse", "dense"],
        help="reward of fine-tuning and its demos",
    )
    parser.add_argument("--out", default="bench_runs")
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="robot-rl train settings for every run, e.g. algo.actor_pessimism=2",
    )
    parser.add_argument(
        "--tag", default="", help="suffix of the run directories of a variant, e.g. --tag=-lcb"
    )
    args = parser.parse_args()
    out = Path(args.out)

    bases: dict[tuple[str, int], tuple[Path, dict]] = {}
    for n in sorted(set(args.demos) | {args.finetune_demos}):
        demos = ensure_demos(args.task, n, out, "sparse")
        for kind in sorted(set(args.policies) | {args.base}):
            bases[kind, n] = base_policy(args.task, kind, demos, out, args.bc_steps)
    print(f"\n| {args.task}: base policy | demos | success (50 episodes, 95% CI) |")
    print("|---|---|---|")
    for (kind, n), (_, r) in sorted(bases.items()):
        print(f"| {kind} | {n} | {success_text(r)} |")

    base_dir, base_eval = bases[args.base, args.finetune_demos]
    demos = ensure_demos(args.task, args.finetune_demos, out, args.reward)
    runs: dict[str, list[Path]] = {}
    for method in args.methods:
        for seed in args.seeds:
            name = f"{method}-{args.task}-{args.base}{args.finetune_demos}{args.tag}-s{seed}"
            run = out / name
            runs.setdefault(method, []).append(run)
            if (run / "eval.csv").exists():
                continue
            overrides = [*METHODS[method], f"task={args.task}", f"base={base_dir}"]
            overrides += [
                f"+env.reward_type={args.reward}",
                f"total_steps={args.steps}",
                f"seed={seed}",
            ]
            overrides += [f"out={run}", "progress=false", "eval_every=1000", "eval_episodes=20"]
            if method == "residual":
                overrides.append(f"demos={demos}")
            overrides += args.override
            trainer = Trainer(compose("train", overrides))
            try:
                trainer.run()
            finally:
                trainer.close()

    if not runs:  # base policies only
        return
    print(
        f"\n| {args.task}: method (base {args.base} from {args.finetune_demos} demos, "
        f"{base_eval['success_rate']:.0%}) | seeds | final success | env steps to mean >= "
        f"{args.threshold:.0%} | wall-clock s to it | s per 1k env steps | final success, "
        "50 episodes | best checkpoint, 50 episodes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, dirs in runs.items():
        row = mean_curve_row(dirs, "success_rate", args.threshold)
        print(
            f"| {method} | {len(dirs)} | {row['final']:.2f} | {row['reach']} | {row['wall']} "
            f"| {row['s_per_1k']:.0f} | {final_column(dirs)} | {final_column(dirs, 'best')} |"
        )
    rlpd = sorted(out.glob(f"rlpd-{args.task}-s*"))
    png = plot_runs(
        [str(d) for dirs in runs.values() for d in dirs] + [str(d) for d in rlpd],
        out / f"finetune-{args.task}{args.tag}.png",
        # the base was evaluated under the success reward: its return is another scale
        {
            f"{args.base} base": base_eval
            if args.reward == "sparse"
            else {"success_rate": base_eval["success_rate"]}
        },
        mean_over_seeds=True,
    )
    print(f"curves: {png}")


if __name__ == "__main__":
    main()
