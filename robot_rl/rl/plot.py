"""Learning curves from runs' ``eval.csv``: success and return against env steps and wall-clock."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import matplotlib
import numpy as np

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
        reader = csv.DictReader(fh)
        missing = {"env_step", "wall_time", *METRICS} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} is not a robot-rl eval.csv: no column {sorted(missing)}")
        try:
            for row in reader:
                for key, value in row.items():
                    cols.setdefault(key, []).append(float(value))
        except (TypeError, ValueError) as exc:  # a row cut short, or not numbers
            raise ValueError(f"{path} line {reader.line_num} is damaged: {exc}") from exc
    if not cols:
        raise ValueError(f"{path} has no evaluations yet")
    return cols


def seed_mean(run_dirs: list[str | Path]) -> dict[str, np.ndarray]:
    """Every ``eval.csv`` column averaged over runs at the evaluations all of them reached, plus
    ``<column>_min`` and ``<column>_max`` across runs; each (T,)."""
    curves = [read_eval(d) for d in run_dirs]
    length = min(len(c["env_step"]) for c in curves)
    out: dict[str, np.ndarray] = {}
    for key in curves[0]:
        stacked = np.array([c[key][:length] for c in curves])  # (runs, T)
        out[key] = stacked.mean(0)
        out[f"{key}_min"] = stacked.min(0)
        out[f"{key}_max"] = stacked.max(0)
    return out


def group_by_seed(run_dirs: list[str]) -> dict[str, list[str]]:
    """Run directories grouped by name less a trailing ``-s<seed>``."""
    groups: dict[str, list[str]] = {}
    for run in run_dirs:
        groups.setdefault(re.sub(r"-s\d+$", "", Path(run).name), []).append(run)
    return groups


def plot_runs(
    run_dirs: list[str],
    out: str | Path,
    references: dict[str, dict[str, float]] | None = None,
    mean_over_seeds: bool = False,
) -> Path:
    """One PNG: a row per metric (success only where the env reports it), against env steps and
    wall-clock, one line per run, or with ``mean_over_seeds`` one line per group of runs that
    differ only in their ``-s<seed>`` suffix (the mean, shaded from the lowest to the highest
    seed); ``references`` ({label: {metric: value}}) draws dashed levels for the metrics it
    names, e.g. the base policy before fine-tuning."""
    if not run_dirs:
        raise ValueError("no run directories to plot")
    if mean_over_seeds:
        data = {
            f"{name} (mean of {len(runs)})": seed_mean(runs)
            for name, runs in group_by_seed(run_dirs).items()
        }
    else:
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
                line = axes[row, col].plot(d[x], d[metric], marker="o", ms=3, label=label)[0]
                if mean_over_seeds:
                    axes[row, col].fill_between(
                        d[x],
                        d[f"{metric}_min"],
                        d[f"{metric}_max"],
                        color=line.get_color(),
                        alpha=0.15,
                    )
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
