"""Learning-curve plots: the mean over seeds and its grouping."""

import re

import numpy as np
import pytest
from PIL import Image

from robot_rl.rl.plot import group_by_seed, plot_runs, seed_mean


def write_run(path, successes, step=1000):
    path.mkdir()
    rows = ["env_step,wall_time,success_rate,return_mean"]
    for i, s in enumerate(successes, 1):
        rows.append(f"{i * step},{10.0 * i},{s},{2 * s}")
    (path / "eval.csv").write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "not a robot-rl eval.csv"),
        ("env_step,wall_time,success_rate,return_mean\n", "has no evaluations yet"),
        ("env_step,wall_time,success_rate,return_mean\n1000,3.0,0.5\n", "line 2 is damaged"),
        ("step,success\n1,0\n", "no column ['env_step', 'return_mean', 'success_rate'"),
    ],
)
def test_an_eval_csv_without_evaluations_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval.csv").write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        plot_runs([str(tmp_path / "run")], tmp_path / "out.png")


def test_seed_mean_averages_the_evaluations_every_run_reached(tmp_path):
    a = write_run(tmp_path / "m-s0", [0.0, 0.5, 1.0])
    b = write_run(tmp_path / "m-s1", [0.2, 0.7])  # stopped one evaluation earlier
    mean = seed_mean([a, b])
    np.testing.assert_allclose(mean["success_rate"], [0.1, 0.6])
    np.testing.assert_allclose(mean["success_rate_min"], [0.0, 0.5])
    np.testing.assert_allclose(mean["success_rate_max"], [0.2, 0.7])
    np.testing.assert_allclose(mean["env_step"], [1000, 2000])


def test_runs_group_by_name_less_the_seed_suffix(tmp_path):
    runs = [str(tmp_path / n) for n in ("rlpd-x-s0", "rlpd-x-s12", "residual-x-s0", "sac-s1x")]
    assert group_by_seed(runs) == {
        "rlpd-x": runs[:2],
        "residual-x": [runs[2]],
        "sac-s1x": [runs[3]],
    }


@pytest.mark.parametrize("mean_over_seeds", [False, True])
def test_plot_writes_a_png(tmp_path, mean_over_seeds):
    runs = [write_run(tmp_path / f"m-s{s}", [0.1 * s, 0.5, 0.9]) for s in range(3)]
    png = plot_runs(runs, tmp_path / "c.png", {"base": {"success_rate": 0.3}}, mean_over_seeds)
    assert Image.open(png).size[0] > 500
