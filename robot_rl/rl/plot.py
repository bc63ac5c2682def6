"""Learning curves from runs' ``eval.csv``: success and return against env steps and wall-clock."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_eval(run_dir: str | Path) -> dict[str, list[float]]:
    path = Path(run_dir) / "eval.csv"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no eval.csv (is it a training run directory?)")
    cols: dict[str, list[float]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            for key, value in row.items():
                cols.setdefault(key, []).append(float(value))
    return cols


def plot_runs(run_dirs: list[str], out: str | Path) -> Path:
    """One PNG with 2x2 panels: success/return vs env steps/wall-clock, one line per run."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for run in run_dirs:
        data = read_eval(run)
        label = Path(run).name
        for row, metric in enumerate(("success_rate", "return_mean")):
            for col, x in enumerate(("env_step", "wall_time")):
                axes[row, col].plot(data[x], data[metric], marker="o", ms=3, label=label)
    for row, name in enumerate(("eval success rate", "eval return")):
        for col, x in enumerate(("env steps", "wall-clock (s)")):
            ax = axes[row, col]
            ax.set_xlabel(x)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
