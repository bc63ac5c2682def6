"""Learning curves from runs' ``eval.csv``: success and return against env steps and wall-clock."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = {"success_rate": "eval success rate", "return_mean": "eval return"}
AXES = {"env_step": "env steps", "wall_time": "wall-clock (s)"}


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


def plot_runs(
    run_dirs: list[str], out: str | Path, references: dict[str, dict[str, float]] | None = None
) -> Path:
    """One PNG: a row per metric (success only where the env reports it), against env steps and
    wall-clock, one line per run; ``references`` ({label: {metric: value}}) draws dashed levels
    for the metrics it names, e.g. the base policy before fine-tuning."""
    if not run_dirs:
        raise ValueError("no run directories to plot")
    data = {Path(run).name: read_eval(run) for run in run_dirs}
    metrics = [
        m for m in METRICS if any(not all(math.isnan(v) for v in d[m]) for d in data.values())
    ]
    fig, axes = plt.subplots(
        len(metrics), 2, figsize=(11, 3.5 * len(metrics)), constrained_layout=True, squeeze=False
    )
    for label, d in data.items():
        for row, metric in enumerate(metrics):
            for col, x in enumerate(AXES):
                axes[row, col].plot(d[x], d[metric], marker="o", ms=3, label=label)
    for row, metric in enumerate(metrics):
        for label, values in (references or {}).items():
            for col in range(len(AXES)):
                if metric in values:
                    axes[row, col].axhline(values[metric], ls="--", c="grey", label=label)
        for col, x in enumerate(AXES.values()):
            axes[row, col].set_xlabel(x)
            axes[row, col].set_ylabel(METRICS[metric])
            axes[row, col].grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
