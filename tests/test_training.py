"""End-to-end training runs, checkpoints, resume, and bad input."""

import dataclasses
import json
import re
import signal
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import zarr

from robot_rl.rl.fasttd3 import FastTD3, FastTD3Config
from robot_rl.rl.sac import SACConfig
from robot_rl.rl.trainer import SavedRun, TrainConfig, Trainer, load_agent

CLI = [sys.executable, "-m", "robot_rl.cli.main"]
TINY_SAC = SACConfig(num_critics=2, hidden=[32, 32], batch_size=32, utd=1)


def tiny(tmp_path, **kw):
    cfg = dict(
        algo=TINY_SAC,
        task="gym:Pendulum-v1",
        total_steps=300,
        learning_starts=100,
        eval_every=150,
        eval_episodes=2,
        out=str(tmp_path / "run"),
        progress=False,
        log_every=50,
    )
    cfg.update(kw)
    return TrainConfig(**cfg)


def run(cfg):
    trainer = Trainer(cfg)
    try:
        return trainer, trainer.run()
    finally:
        trainer.close()


def test_train_writes_checkpoint_curves_and_tensorboard(tmp_path):
    _, run_dir = run(tiny(tmp_path))
    rows = (run_dir / "eval.csv").read_text().splitlines()
    assert rows[0] == "env_step,wall_time,success_rate,return_mean" and len(rows) == 3
    config = json.loads((run_dir / "checkpoint" / "config.json").read_text())
    assert config["step"] == 300 and config["train"]["algo"]["num_critics"] == 2
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert not list(run_dir.rglob("*.pt")) and not list(run_dir.rglob("*.pkl"))


TINY_FASTTD3 = FastTD3Config(actor_hidden=[32], critic_hidden=[64], batch_size=64)


@pytest.mark.parametrize("algo", [TINY_SAC, TINY_FASTTD3], ids=["sac", "fasttd3"])
def test_checkpoint_reproduces_the_trained_agents_actions_in_a_fresh_process(tmp_path, algo):
    trainer, run_dir = run(tiny(tmp_path, algo=algo))
    obs = torch.linspace(-1, 1, 12).reshape(4, 3)
    here = trainer.agent.act({"state": obs}, deterministic=True)  # the agent that trained
    code = (
        "import sys, torch; from robot_rl.rl.trainer import load_agent;"
        "a, _, _ = load_agent(sys.argv[1]);"
        "o = torch.linspace(-1, 1, 12).reshape(4, 3);"
        "print(a.act({'state': o}, deterministic=True).flatten().tolist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(run_dir / "checkpoint")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    there = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(here.flatten(), there, atol=0, rtol=0)


def test_resume_continues_with_replay_intact(tmp_path):
    # stopped mid-episode (Pendulum's run 200 steps): the newest transition has no next
    # observation, and the resumed run, which starts a new episode, must not supply one
    trainer, run_dir = run(tiny(tmp_path, total_steps=180, eval_every=90))
    saved = trainer.replay.state_dict()
    resumed = Trainer(tiny(tmp_path, total_steps=270, eval_every=90, resume=str(run_dir)))
    try:
        assert resumed.step == 180
        restored = {k: v.clone() for k, v in resumed.replay.state_dict().items()}
        assert bool(saved["has_action"][0, 179]) and not bool(restored["has_action"][0, 179])
        restored["has_action"][0, 179] = True
        for key, value in saved.items():
            assert torch.equal(restored[key], value), key
        resumed.run()
        assert resumed.step == 270
        assert not bool(resumed.replay.has_action[0, 179])  # dropped, not bridged
    finally:
        resumed.close()
    steps = [int(r.split(",")[0]) for r in (run_dir / "eval.csv").read_text().splitlines()[1:]]
    assert steps == [90, 180, 270]


def test_a_new_run_does_not_write_over_another(tmp_path):
    _, run_dir = run(tiny(tmp_path, total_steps=150))
    before = (run_dir / "eval.csv").read_text()
    with pytest.raises(ValueError, match="already holds a run: continue it with resume="):
        Trainer(tiny(tmp_path))
    assert (run_dir / "eval.csv").read_text() == before
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a run directory"):
        Trainer(tiny(tmp_path, out=str(tmp_path / "a_file")))


def before_learning_at(trainer: Trainer, monkeypatch, step: int, event) -> list[int]:
    """Call ``event()`` as the trainer starts learning at env ``step``; returns the steps
    learned at, filled as the run goes."""
    learn, learned_at = trainer.agent.learn, []

    def learn_after_event(sample):
        if trainer.step == step:
            event()
        learned_at.append(trainer.step)
        return learn(sample)

    monkeypatch.setattr(trainer.agent, "learn", learn_after_event)
    return learned_at


def run_until_it_raises(trainer: Trainer, error: type[BaseException], match: str) -> None:
    try:
        with pytest.raises(error, match=match):
            trainer.run()
    finally:
        trainer.close()


def test_ctrl_c_saves_a_checkpoint_of_the_whole_step_it_lands_in(tmp_path, monkeypatch):
    trainer = Trainer(tiny(tmp_path, total_steps=400, eval_every=1000))
    # the Ctrl-C is held back until this step is done
    learned_at = before_learning_at(
        trainer, monkeypatch, 150, lambda: signal.raise_signal(signal.SIGINT)
    )
    run_until_it_raises(trainer, KeyboardInterrupt, "checkpoint saved at env step 150")
    assert learned_at[-1] == 150  # the step it landed in was learned from, then it stopped
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "checkpoint" / "config.json").read_text())["step"] == 150
    resumed = Trainer(tiny(tmp_path, total_steps=200, eval_every=1000, resume=str(run_dir)))
    try:
        assert resumed.step == 150 and int(resumed.replay.total[0]) == 150
        resumed.run()
        assert resumed.step == 200
    finally:
        resumed.close()


def test_best_checkpoint_holds_the_best_evaluation_and_survives_resume(tmp_path):
    _, run_dir = run(tiny(tmp_path, total_steps=400, eval_every=100))
    rows = [r.split(",") for r in (run_dir / "eval.csv").read_text().splitlines()[1:]]
    # Pendulum reports no success, so the return ranks; the later of equal evaluations wins
    step, _, _, ret = max(reversed(rows), key=lambda r: float(r[3]))
    best = json.loads((run_dir / "best" / "config.json").read_text())
    assert best["step"] == int(step) and best["eval"]["return_mean"] == float(ret)
    agent, _, _ = load_agent(run_dir / "best")  # a checkpoint like any other
    assert agent.act({"state": torch.zeros(1, 3)}).shape == (1, 1)
    resumed = Trainer(tiny(tmp_path, total_steps=400, eval_every=100, resume=str(run_dir)))
    try:
        assert resumed.best_score == (0.0, float(ret))
    finally:
        resumed.close()
    _, plain = run(tiny(tmp_path, out=str(tmp_path / "plain"), keep_best=False))
    assert not (plain / "best").exists()


def test_a_checkpoint_is_refused_by_an_env_with_other_observations(tmp_path):
    _, run_dir = run(tiny(tmp_path))
    config_file = run_dir / "checkpoint" / "config.json"
    config = json.loads(config_file.read_text())
    config["train"]["task"] = "gym:MountainCarContinuous-v0"  # 2-dim state, 1-dim action
    config_file.write_text(json.dumps(config))
    made_for = r"made for observations \{'state': \[3\]\}, but the env gives \{'state': \[2\]\}"
    with pytest.raises(ValueError, match=made_for):
        SavedRun.load(run_dir).evaluate(episodes=1, num_envs=1)
    with pytest.raises(ValueError, match=made_for):
        Trainer(tiny(tmp_path, task="gym:MountainCarContinuous-v0", resume=str(run_dir)))


def test_fasttd3_trains_with_parallel_envs(tmp_path):
    algo = FastTD3Config(actor_hidden=[32], critic_hidden=[64], atoms=21, batch_size=128)
    trainer, run_dir = run(tiny(tmp_path, algo=algo, num_envs=4, total_steps=400))
    assert trainer.replay.num_envs == 4 and trainer.step == 400
    assert (run_dir / "checkpoint" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "task, env, given, support",
    [
        ("reach", {"reward_type": "sparse"}, {}, (0.0, 1.0)),  # success ends it: returns in [0, 1]
        ("reach", {"reward_type": "dense"}, {}, (-20.0, 200.0)),
        ("gym:Pendulum-v1", {}, {}, (-20.0, 200.0)),
        ("reach", {"reward_type": "sparse"}, {"v_min": -1.0}, (-1.0, 1.0)),  # given: kept
    ],
)
def test_fasttd3_support_is_chosen_by_task_and_recorded(tmp_path, task, env, given, support):
    algo = FastTD3Config(actor_hidden=[32], critic_hidden=[32], **given)
    trainer = Trainer(tiny(tmp_path, algo=algo, task=task, env=env, num_envs=2))
    try:
        assert (trainer.agent.cfg.v_min, trainer.agent.cfg.v_max) == support
        assert (trainer.cfg.algo.v_min, trainer.cfg.algo.v_max) == support  # the checkpoint's
    finally:
        trainer.close()


def test_fasttd3_refuses_an_empty_support():
    with pytest.raises(ValueError, match="v_min < v_max"):
        FastTD3(FastTD3Config(v_min=1.0, v_max=1.0), {"state": (3,)}, 1, 1)


@pytest.mark.parametrize(
    "algo, num_envs",
    [(TINY_SAC, 1), (TINY_FASTTD3, 4)],
    ids=["rlpd", "fasttd3"],
)
def test_learners_train_from_demos_on_our_task(tmp_path, algo, num_envs):
    from robot_rl.data.collect import collect_episodes
    from robot_rl.sim.experts import EXPERTS
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime

    rt = TaskRuntime(make_task("reach"), 2)
    collect_episodes(
        rt, lambda r, o: EXPERTS["reach"](r), 2, str(tmp_path / "d.zarr"), 0, show_progress=False
    )
    rt.close()
    cfg = tiny(
        tmp_path,
        algo=algo,
        num_envs=num_envs,
        task="reach",
        demos=str(tmp_path / "d.zarr"),
        total_steps=60,
        eval_every=60,
        eval_episodes=2,
    )
    trainer, _ = run(cfg)
    assert trainer.demo is not None and trainer.step >= 60
    # half of a batch comes from the demos (last), half evenly from every env's online replay
    batch, half = trainer.sample(64), 32
    key = sorted(batch["obs"])[0]
    demo_rows = {tuple(r.tolist()) for r in trainer.demo.obs[key][trainer.demo.written]}
    online_rows = {tuple(r.tolist()) for r in trainer.replay.obs[key][trainer.replay.written]}
    assert {tuple(r.tolist()) for r in batch["obs"][key][half:]} <= demo_rows
    assert {tuple(r.tolist()) for r in batch["obs"][key][:half]} <= online_rows
    per_env = torch.bincount(batch["env"][:half], minlength=num_envs).tolist()
    assert per_env == [half // num_envs] * num_envs


class NaNAfter(gym.Wrapper):
    def __init__(self, env, after=30):
        super().__init__(env)
        self.count, self.after = 0, after

    def step(self, action):
        obs, *rest = self.env.step(action)
        self.count += 1
        if self.count >= self.after:
            obs = np.full_like(obs, np.nan)
        return (obs, *rest)


def test_nan_observation_stops_training_with_the_step(tmp_path):
    gym.register("NaNPendulum-v0", entry_point=lambda: NaNAfter(gym.make("Pendulum-v1")))
    with pytest.raises(FloatingPointError, match=r"non-finite observation 'state' at env step 29"):
        run(tiny(tmp_path, task="gym:NaNPendulum-v0"))


class NaNAtEpisodeEnd(gym.Wrapper):
    """Finite observations but for the last of each episode, which autoreset hides from the
    next observation: only ``info["final_obs"]`` carries it."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def test_nan_final_observation_stops_training_with_the_step(tmp_path):
    gym.register(
        "NaNEndPendulum-v0",
        entry_point=lambda: NaNAtEpisodeEnd(gym.make("Pendulum-v1", max_episode_steps=25)),
    )
    with pytest.raises(
        FloatingPointError, match=r"non-finite final observation 'state' at env step 24"
    ):
        run(tiny(tmp_path, task="gym:NaNEndPendulum-v0"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"algo": dataclasses.replace(TINY_SAC, utd=0)}, "at least 1: {'algo.utd': 0}"),
        ({"algo": dataclasses.replace(TINY_FASTTD3, policy_delay=0)}, "'algo.policy_delay': 0"),
        ({"eval_episodes": 0}, "at least 1: {'eval_episodes': 0}"),
        ({"demo_fraction": 1.5}, "demo_fraction is a share of each batch in [0, 1]"),
        ({"replay_capacity": 0}, "at least 1: {'replay_capacity': 0}"),
        ({"num_envs": -2}, "num_envs is a count (0: the learner's default), not -2"),
        ({"algo": dataclasses.replace(TINY_SAC, gamma=1.5)}, "a discount in (0, 1], not 1.5"),
        ({"base": "runs/bc/policy"}, "algo=sac trains from scratch: drop base="),
        ({"device": "gpu"}, "device=gpu is not a device"),
    ],
)
def test_settings_out_of_range_are_refused(tmp_path, settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Trainer(tiny(tmp_path, **settings))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sees no CUDA GPU: use device=cpu"):
        Trainer(tiny(tmp_path, device="cuda"))


def test_resume_needs_steps_left_and_damaged_files_are_named(tmp_path):
    _, run_dir = run(tiny(tmp_path, total_steps=150))
    with pytest.raises(ValueError, match="is already at env step 150: give a total_steps above"):
        Trainer(tiny(tmp_path, total_steps=100, resume=str(run_dir)))
    replay = run_dir / "replay.safetensors"
    replay.write_bytes(replay.read_bytes()[:100])
    with pytest.raises(ValueError, match="replay.safetensors is damaged .* move it away"):
        Trainer(tiny(tmp_path, total_steps=300, resume=str(run_dir)))
    weights = run_dir / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors is damaged"):
        SavedRun.load(run_dir)
    (run_dir / "checkpoint" / "config.json").write_text('{"train": ')
    with pytest.raises(ValueError, match="config.json is damaged"):
        SavedRun.load(run_dir)


def test_discrete_action_space_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Discrete action space"):
        Trainer(tiny(tmp_path, task="gym:CartPole-v1"))


@pytest.fixture
def opened_envs(monkeypatch):
    """Every env the trainer makes, with a record of whether it was closed."""
    import robot_rl.rl.trainer as trainer_module

    made = []

    def make_and_record(*args, **kwargs):
        env = real(*args, **kwargs)
        close = env.close
        env.was_closed = False

        def record_close():
            env.was_closed = True
            close()

        env.close = record_close
        made.append(env)
        return env

    real = trainer_module.make_env
    monkeypatch.setattr(trainer_module, "make_env", make_and_record)
    return made


def test_demo_store_that_does_not_match_the_env_is_refused(tmp_path, opened_envs):
    from robot_rl.data.collect import collect_episodes
    from robot_rl.sim.experts import EXPERTS
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime

    rt = TaskRuntime(make_task("reach"), 1)
    collect_episodes(
        rt, lambda r, o: EXPERTS["reach"](r), 1, str(tmp_path / "d.zarr"), 0, show_progress=False
    )
    rt.close()
    with pytest.raises(ValueError, match="task='reach', but training uses task='pick_cube'"):
        Trainer(tiny(tmp_path, task="pick_cube", demos=str(tmp_path / "d.zarr"), num_envs=4))
    # The refused trainer had made its training and evaluation worlds: both are closed.
    assert len(opened_envs) == 2 and all(env.was_closed for env in opened_envs)
    with pytest.raises(ValueError, match="has observations"):  # state demos, pixel training
        Trainer(
            tiny(
                tmp_path,
                task="reach",
                obs="pixels",
                demos=str(tmp_path / "d.zarr"),
                env={"image_size": 32},
            )
        )
    # Same task, other reward (or the dense reward's success bonus): demo rewards are used as
    # recorded, so these are refused too.
    for env, recorded in [
        ({"reward_type": "sparse"}, "reward_type='dense'"),
        ({"success_bonus_discount": 0.99}, "success_bonus_discount=0.0"),
    ]:
        with pytest.raises(ValueError, match=f"{recorded}, but training uses"):
            Trainer(tiny(tmp_path, task="reach", demos=str(tmp_path / "d.zarr"), env=env))
    # A store written before that setting existed was recorded at its default, and still loads.
    group = zarr.open_group(str(tmp_path / "d.zarr"), mode="r+")
    config = dict(group.attrs["config"])
    del config["success_bonus_discount"]
    group.attrs["config"] = config
    Trainer(tiny(tmp_path, task="reach", demos=str(tmp_path / "d.zarr"), num_envs=4)).close()


@pytest.mark.slow
def test_cli_train_eval_plot(tmp_path):
    run_dir = tmp_path / "run"
    out = subprocess.run(
        [
            *CLI,
            "train",
            "algo=sac",
            "task=gym:Pendulum-v1",
            "total_steps=200",
            "learning_starts=100",
            "eval_every=100",
            "eval_episodes=2",
            f"out={run_dir}",
            "algo.num_critics=2",
            "algo.hidden=[32,32]",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [*CLI, "eval", f"ckpt={run_dir}", "episodes=3", "num_envs=3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "return" in out.stderr + out.stdout
    png = tmp_path / "curves.png"
    out = subprocess.run(
        [*CLI, "plot", str(run_dir), str(run_dir), f"out={png}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = subprocess.run(
        [*CLI, "train", "algo=sac", "algo.bogus=1"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "error" in out.stderr
    out = subprocess.run(
        [*CLI, "train", f"resume={tmp_path / 'nothing'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "a run directory written by robot-rl train" in out.stderr
    assert Path(run_dir / "checkpoint" / "model.safetensors").exists()


def test_sac_from_pixels_runs_end_to_end(tmp_path):
    algo = SACConfig(num_critics=2, hidden=[32], batch_size=8, utd=1, image_feature_dim=16)
    trainer, _ = run(
        tiny(
            tmp_path,
            algo=algo,
            task="reach",
            obs="pixels",
            total_steps=30,
            learning_starts=10,
            eval_every=30,
            eval_episodes=1,
            env={"max_episode_steps": 15, "image_size": 48},
        )
    )
    assert set(trainer.shapes) == {"proprio", "front", "wrist"}
    assert trainer.replay.obs["front"].dtype == torch.uint8  # frames stored as uint8


def test_non_finite_loss_stops_training_with_the_step(tmp_path, monkeypatch):
    trainer = Trainer(tiny(tmp_path))

    @torch.no_grad()
    def break_the_critic():
        trainer.agent.critic.head.bias.fill_(float("nan"))

    before_learning_at(trainer, monkeypatch, 150, break_the_critic)
    run_until_it_raises(trainer, FloatingPointError, "loss/critic became nan at env step 150")


def test_loop_redraws_fasttd3_noise_only_for_the_envs_whose_episode_ended(tmp_path, monkeypatch):
    lengths = [7, 11]  # the two training envs' episodes; the eval env keeps Pendulum's 200
    gym.register(
        "TwoLengthPendulum-v0",
        entry_point=lambda: gym.make(
            "Pendulum-v1", max_episode_steps=lengths.pop(0) if lengths else 200
        ),
    )
    algo = FastTD3Config(actor_hidden=[8], critic_hidden=[8], atoms=11, batch_size=8)
    cfg = tiny(
        tmp_path,
        algo=algo,
        task="gym:TwoLengthPendulum-v0",
        num_envs=2,
        total_steps=80,
        learning_starts=0,
        eval_episodes=1,
    )
    trainer = Trainer(cfg)
    stds, act = [], trainer.agent.act

    def act_and_record(obs, deterministic=False):
        if not deterministic:  # exploring: the noise std this env step acts with
            stds.append(trainer.agent.noise_std.clone())
        return act(obs, deterministic)

    monkeypatch.setattr(trainer.agent, "act", act_and_record)
    try:
        trainer.run()
    finally:
        trainer.close()
    assert len(stds) == 40
    # act call t follows t env steps: its std differs from call t-1's where an episode ended
    # at step t, i.e. every 7th step for env 0 and every 11th for env 1, and nowhere else
    changed = torch.stack([now != before for before, now in pairwise(stds)])
    ended = torch.tensor([[t % 7 == 0, t % 11 == 0] for t in range(1, 40)])
    assert torch.equal(changed, ended)


class _TwoSpeedEnv:
    """Env 0 succeeds after 1 step, env 1 fails after 10: an evaluator that takes the first
    episodes to finish would report mostly successes."""

    num_envs = 2

    def reset(self, seed=None):
        self.t = torch.zeros(2, dtype=torch.long)
        return {"state": torch.zeros(2, 1)}, {}

    def step(self, action):
        self.t += 1
        done = torch.tensor([True, bool(self.t[1] % 10 == 0)])
        info = {"success": torch.tensor([1.0, 0.0])}
        return {"state": torch.zeros(2, 1)}, done.float(), done, torch.zeros(2, dtype=bool), info


def test_evaluation_gives_each_env_its_share_of_episodes():
    from robot_rl.rl.trainer import evaluate

    class Agent:
        def act(self, obs, deterministic=True):
            return torch.zeros(2, 1)

    result = evaluate(Agent(), _TwoSpeedEnv(), 10, seed=0)
    assert result["success_rate"] == 0.5
