"""The robot-rl console script, run as a user runs it."""

import os
import re
import signal
import subprocess
import sys
import time

import imageio.v2 as imageio
import numpy as np
import pytest

from robot_rl.cli.main import compose
from robot_rl.data.episode_store import EpisodeStore

CLI = [sys.executable, "-m", "robot_rl.cli.main"]


def run(*args, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kw)


def test_help_lists_subcommands():
    out = run("--help")
    assert out.returncode == 0
    assert "collect" in out.stdout and "rollout" in out.stdout


def test_command_help_shows_settings():
    out = run("collect", "task=peg_insert", "--help")
    assert out.returncode == 0
    assert "episodes: 20" in out.stdout and "clearance: 0.002" in out.stdout


@pytest.mark.parametrize("override", ["task.no_such_key=1", "episodes=lots", "task=juggle"])
def test_bad_settings_fail_clearly(override):
    out = run("collect", override)
    assert out.returncode == 2
    assert "robot-rl collect: error:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["totl_steps=9"], "unknown setting 'totl_steps' (did you mean total_steps?)"),
        (["+totl_steps=9"], "unknown setting 'totl_steps' (did you mean total_steps?)"),
        (["algo=fasttd3", "+algo.polcy_delay=3"], "(did you mean algo.policy_delay or"),
        (["algo.utd=abc"], "algo.utd=abc: Value 'abc' of type 'str' could not be converted to Int"),
    ],
)
def test_unknown_or_mistyped_train_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        compose("train", overrides)
    assert compose("train", ["+env.reward_type=sparse"]).env == {"reward_type": "sparse"}


def test_bad_requests_are_refused_before_any_work(tmp_path):
    from robot_rl.cli import commands
    from robot_rl.cli.main import resume_overrides

    with pytest.raises(ValueError, match="collect at least 1 episode in 1 world, not 0"):
        commands.collect(compose("collect", ["task=reach", "episodes=0"]))
    # refused before the checkpoint (which does not exist) is even looked for
    with pytest.raises(ValueError, match="video=x.txt: give the path of an .mp4 file"):
        commands.evaluate(compose("eval", ["ckpt=nowhere", "video=x.txt"]))
    run_dir = tmp_path / "run" / "checkpoint"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(
        '{"train": {"algo": {"name": "sac"}, "env": {}, "task": "reach"}}'
    )
    with pytest.raises(ValueError, match="trained with algo=sac; a resumed run keeps its learner"):
        resume_overrides([f"resume={tmp_path / 'run'}", "algo=fasttd3_cpu"])
    resume_overrides([f"resume={tmp_path / 'run'}", "algo=sac"])  # the same learner: fine


def test_collect_writes_demonstrations(tmp_path):
    out = run(
        "collect",
        "task=reach",
        "episodes=3",
        "num_envs=2",
        f"out={tmp_path / 'd.zarr'}",
        "progress=false",
    )
    assert out.returncode == 0, out.stderr
    store = EpisodeStore(tmp_path / "d.zarr")
    assert store.num_episodes == 3
    assert store.attrs["task"] == "reach" and store.attrs["obs_mode"] == "state"
    for i in range(3):
        steps, _ = store.episode(i)
        assert steps["terminated"][-1] and not steps["terminated"][:-1].any()
    # Appending a pixel store onto a state store is refused and loses nothing.
    out = run(
        "collect",
        "task=reach",
        "task.obs_mode=pixels",
        "episodes=1",
        f"out={tmp_path / 'd.zarr'}",
        "progress=false",
    )
    assert out.returncode == 2 and "cannot append" in out.stderr
    assert EpisodeStore(tmp_path / "d.zarr").num_episodes == 3


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_collection_keeps_every_finished_episode(tmp_path, sig):
    path = tmp_path / "d.zarr"
    proc = subprocess.Popen(
        [
            *CLI,
            "collect",
            "task=reach",
            "episodes=100000",  # never finishes before the signal
            "num_envs=2",
            f"out={path}",
            "progress=false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a suite started with `&` in a non-interactive shell inherits an
        # ignored SIGINT, and so would the collector (Python keeps an inherited SIG_IGN).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline, seen = time.time() + 120, 0
    while time.time() < deadline and seen < 3:
        time.sleep(0.5)
        try:
            seen = EpisodeStore(path).num_episodes
        except Exception:  # not created yet, or caught mid-write
            continue
    try:
        assert seen >= 3, f"the store showed {seen} episodes within 120 s"
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the collector outlived {sig!r} by 30 s") from None
    finally:
        proc.kill()  # a collector that ignored the signal must not outlive the test
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "every finished episode is saved in the store" in err
    store = EpisodeStore(path)
    assert store.num_episodes >= 3
    for i in range(store.num_episodes):
        steps, final = store.episode(i)
        assert len(steps["state"]) == len(steps["action"]) > 0
        assert np.isfinite(steps["state"]).all() and np.isfinite(final["state"]).all()
        assert steps["terminated"][-1] or steps["truncated"][-1]


@pytest.mark.slow
def test_rollout_writes_a_watchable_video(tmp_path):
    video = tmp_path / "r.mp4"
    out = run("rollout", "task=reach", "episodes=1", f"video={video}", "size=64")
    assert out.returncode == 0, out.stderr
    frames = [f for f in imageio.get_reader(video)]
    assert len(frames) > 5 and frames[0].shape == (64, 128, 3)
    assert np.std(frames[0]) > 5  # a rendered scene, not a blank frame
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # it moves


def test_module_entry_point_matches_console_script():
    exe = os.path.join(os.path.dirname(sys.executable), "robot-rl")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "collect" in out.stdout
