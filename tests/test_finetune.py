"""Fine-tuning a frozen base policy: residual RL and DSRL invariants, on real envs."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from robot_rl.batched_env import BatchedEnv
from robot_rl.policies import DiffusionPolicy, DiffusionPolicyConfig
from robot_rl.policies.runner import ChunkRunner
from robot_rl.rl.base_policy_envs import LatentSteeringEnv, ResidualEnv
from robot_rl.rl.checkpoint import flat_state, load_flat_state
from robot_rl.rl.dsrl import DSRLNA, DSRLConfig
from robot_rl.rl.envs import GymBatchedEnv, obs_shapes
from robot_rl.rl.losses import sac_critic_loss
from robot_rl.rl.residual import ResidualConfig, ResidualTD3
from robot_rl.rl.sac import SAC, SACConfig

CLI = [sys.executable, "-m", "robot_rl.cli.main"]


def pendulum_base(horizon=4, seed=0):
    """A randomly initialised diffusion policy for Pendulum: its chunks are arbitrary but fixed."""
    torch.manual_seed(seed)
    cfg = DiffusionPolicyConfig(action_horizon=horizon, hidden=[64, 64], inference_steps=4)
    policy = DiffusionPolicy(cfg, {"state": (3,)}, 1)
    return policy.eval().requires_grad_(False)


class Recorder(BatchedEnv):
    """Pass-through that records every action sent and reward received."""

    def __init__(self, env):
        self.env, self.actions, self.rewards = env, [], []
        self.runtime = getattr(env, "runtime", None)
        self.num_envs, self.device = env.num_envs, env.device
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space

    def reset(self, seed=None):
        return self.env.reset(seed)

    def reset_envs(self, mask):
        return self.env.reset_envs(mask)

    def step(self, action, autoreset=True):
        out = self.env.step(action, autoreset)
        self.actions.append(action.clone())
        self.rewards.append(out[1].clone())
        return out

    def close(self):
        self.env.close()


def test_residual_at_initialisation_reproduces_base_rollouts_exactly():
    base = pendulum_base()
    plain = Recorder(GymBatchedEnv("Pendulum-v1", 2))
    runner = ChunkRunner(base, 2, seed=7)
    obs, _ = plain.reset(seed=3)
    for _ in range(230):  # crosses the 200-step episode end
        obs, _, term, trunc, _ = plain.step(runner.act(obs))
        runner.episode_done(term | trunc)

    inner = Recorder(GymBatchedEnv("Pendulum-v1", 2))
    env = ResidualEnv(inner, base, action_scale=0.2, seed=7)
    agent = ResidualTD3(
        ResidualConfig(hidden=[32, 32]), {k: s for k, (s, _) in obs_shapes(env).items()}, 1
    )
    obs, _ = env.reset(seed=3)
    for _ in range(230):
        obs, *_ = env.step(agent.act(obs, deterministic=True))
    assert torch.equal(torch.stack(inner.actions), torch.stack(plain.actions))
    # whatever the agent asks, the env stays within action_scale of the base
    for _ in range(50):
        base_action = obs["base_action"].clone()
        obs, *_ = env.step(torch.randn(2, 1) * 5)
        assert float((inner.actions[-1] - base_action).abs().max()) <= 0.2 + 1e-6
    # and so does the agent's own noisy exploration, in what it stores as its action
    agent.actor.net[-1].weight.data.normal_()
    for _ in range(50):
        action = agent.act(obs)
        assert float((action - obs["base_action"]).abs().max()) <= 0.2 + 1e-6
        obs, *_ = env.step(action)
        assert torch.equal(inner.actions[-1], action)  # the replay holds what was executed


def test_chunk_reward_is_the_sum_of_its_steps_and_chunks_end_with_the_episode():
    base = pendulum_base(horizon=7)  # 200 is not a multiple of 7: the episode ends mid-chunk
    inner = Recorder(GymBatchedEnv("Pendulum-v1", 2))
    env = LatentSteeringEnv(inner, base, action_magnitude=1.5)
    env.reset(seed=0)
    calls = []
    sample = base.sample
    base.sample = lambda cond, noise: calls.append(len(noise)) or sample(cond, noise)
    total_steps = 0
    for i in range(30):
        before = len(inner.rewards)
        _, reward, term, trunc, info = env.step(torch.rand(2, 7) * 2 - 1)
        taken = inner.rewards[before:]
        total_steps += info["env_steps"]
        if i < 28:
            assert len(taken) == 7 and not bool(trunc.any())
            torch.testing.assert_close(reward, torch.stack(taken).sum(0))
        if i == 28:  # steps 197..199: the episode truncates after 4 of the chunk's 7 steps
            assert len(taken) == 4 and bool(trunc.all()) and info["env_steps"] == 8
            torch.testing.assert_close(reward, torch.stack(taken).sum(0))
    assert calls == [2] * 30  # every latent denoised exactly once per executed chunk
    assert total_steps == 2 * (28 * 7 + 4 + 7)


def test_steered_actions_have_the_base_distribution_for_standard_normal_latents():
    base = pendulum_base(horizon=2)
    env = LatentSteeringEnv(GymBatchedEnv("Pendulum-v1", 1), base, action_magnitude=8.0)
    obs = {"state": torch.tensor([[0.3, -0.2, 0.5]]).repeat(4000, 1)}
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4000, 2, generator=gen)
    steered = env.decode(obs, w / 8.0).flatten(1)  # through the env's latent scaling
    sampled = base.predict_action({"state": obs["state"][:, None]}, generator=gen).flatten(1)
    for d in range(steered.shape[1]):
        assert ks_statistic(steered[:, d], sampled[:, d]) < 1.628 * (2 / 4000) ** 0.5  # alpha 0.01
    assert float(steered.std(0).min()) > 0.01  # a real spread, not a constant


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the empirical CDFs."""
    grid = torch.cat([a, b]).sort().values
    cdf = lambda x: torch.searchsorted(x.sort().values, grid, right=True) / len(x)  # noqa: E731
    return float((cdf(a) - cdf(b)).abs().max())


def batch_of(env, n=64):
    obs, _ = env.reset(seed=0)
    rows = torch.randint(0, env.num_envs, (n,))
    return {
        "obs": {k: v[rows] for k, v in obs.items()},
        "next_obs": {k: v[rows] + 0.01 for k, v in obs.items()},
        "action": torch.rand(n, env.single_action_space.shape[0]) * 2 - 1,
        "reward": torch.rand(n),
        "discount": torch.full((n,), 0.99),
    }


@pytest.mark.parametrize("algo", ["residual", "dsrl"])
def test_base_weights_stay_bit_identical_and_get_no_gradient(algo):
    base = pendulum_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    inner = GymBatchedEnv("Pendulum-v1", 4)
    if algo == "residual":
        env = ResidualEnv(inner, base, 0.2)
        agent = ResidualTD3(
            ResidualConfig(hidden=[32, 32], critic_warmup=0),
            {k: s for k, (s, _) in obs_shapes(env).items()},
            1,
        )
    else:
        env = LatentSteeringEnv(inner, base, 1.5)
        agent = DSRLNA(DSRLConfig(hidden=[32, 32]), {"state": (3,)}, 4, base)
    base.requires_grad_(True)  # even if someone un-freezes it, the learner must not touch it
    for _ in range(20):
        agent.update(batch_of(env))
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in base.parameters())
    assert not any(k.startswith("_base") for k in agent.state_dict())


def test_noise_critic_distillation_reduces_its_error():
    torch.manual_seed(0)
    base = pendulum_base()
    agent = DSRLNA(DSRLConfig(hidden=[64, 64], lr=1e-3), {"state": (3,)}, 4, base)
    obs = {"state": torch.randn(256, 3)}
    features = agent.encoder(obs).detach()

    def error():
        torch.manual_seed(123)  # the same held-out latents each time
        u = torch.randn(256, 4) / 1.5
        with torch.no_grad():
            target = agent.q_action(features, agent.executed(obs, u))[..., 0].mean(0)
            return float(((agent.q_noise(features, u)[..., 0] - target) ** 2).mean())

    start = error()
    opt = torch.optim.Adam(agent.q_noise.parameters(), lr=1e-3)
    for _ in range(300):
        opt.zero_grad()
        agent.distill_loss(features, obs).backward()
        opt.step()
    assert error() < 0.1 * start


def test_residual_actor_starts_at_zero_and_moves_only_after_critic_warmup():
    env = ResidualEnv(GymBatchedEnv("Pendulum-v1", 2), pendulum_base(), 0.2)
    shapes = {k: s for k, (s, _) in obs_shapes(env).items()}
    agent = ResidualTD3(ResidualConfig(hidden=[32, 32], critic_warmup=3, utd=1), shapes, 1)
    batch = batch_of(env)
    obs = batch["obs"]
    base = obs["base_action"].clamp(-1, 1)
    assert torch.equal(agent.act(obs, deterministic=True), base)
    for _ in range(3):
        agent.learn(lambda n: batch)
    assert torch.equal(agent.act(obs, deterministic=True), base)
    for _ in range(4):
        agent.learn(lambda n: batch)
    assert not torch.equal(agent.act(obs, deterministic=True), base)


def test_residual_explores_wider_only_until_the_actor_moves():
    env = ResidualEnv(GymBatchedEnv("Pendulum-v1", 2), pendulum_base(), 0.2)
    shapes = {k: s for k, (s, _) in obs_shapes(env).items()}
    cfg = ResidualConfig(
        hidden=[32, 32],
        action_scale=0.5,
        critic_warmup=2,
        utd=1,
        exploration_std=0.01,
        warmup_exploration_std=0.1,
    )
    agent, batch = ResidualTD3(cfg, shapes, 1), batch_of(env)
    obs = {k: v[:1].expand(4000, *v.shape[1:]) for k, v in batch["obs"].items()}
    obs["base_action"] = torch.zeros(4000, 1)  # away from the bounds: nothing is clamped

    def noise_std():
        return (agent.act(obs) - agent.act(obs, deterministic=True)).std().item()

    torch.manual_seed(0)
    for calls in range(3):  # before learning, and up to the last critic-only call
        while agent.learn_calls < calls:
            agent.learn(lambda n: batch)
        assert noise_std() == pytest.approx(0.1, rel=0.05)
    agent.learn(lambda n: batch)  # the actor's first step
    assert noise_std() == pytest.approx(0.01, rel=0.05)


def test_residual_authority_ramps_in_linearly_after_the_warmup_and_survives_resume():
    env = ResidualEnv(GymBatchedEnv("Pendulum-v1", 2), pendulum_base(), 0.2)
    shapes = {k: s for k, (s, _) in obs_shapes(env).items()}
    cfg = ResidualConfig(
        hidden=[32, 32], action_scale=0.2, critic_warmup=3, authority_ramp=4, utd=1, actor_every=1
    )
    agent, batch = ResidualTD3(cfg, shapes, 1), batch_of(env)
    obs = batch["obs"]
    base = obs["base_action"].clamp(-1, 1)
    torch.nn.init.normal_(agent.actor.net[-1].weight, std=10.0)  # a saturated residual
    assert torch.equal(agent.act(obs, deterministic=True), base)  # no authority yet
    for calls, authority in [(3, 0.0), (4, 0.25), (5, 0.5), (7, 1.0), (9, 1.0)]:
        while agent.learn_calls < calls:
            agent.learn(lambda n: batch)
        assert agent.authority.item() == authority
        deviation = (agent.act(obs, deterministic=True) - base).abs()
        assert (deviation <= authority * 0.2 + 1e-6).all()
        if authority:
            assert deviation.max() > 0.5 * authority * 0.2  # the saturated actor uses it
    resumed = ResidualTD3(cfg, shapes, 1)
    agent.learn_calls = 5
    load_flat_state(resumed, *flat_state(agent))
    assert resumed.authority.item() == 0.5


def test_residual_checkpoint_keeps_its_warmup_progress():
    env = ResidualEnv(GymBatchedEnv("Pendulum-v1", 2), pendulum_base(), 0.2)
    shapes = {k: s for k, (s, _) in obs_shapes(env).items()}
    cfg = ResidualConfig(hidden=[32, 32], critic_warmup=3, utd=1)
    agent, batch = ResidualTD3(cfg, shapes, 1), batch_of(env)
    for _ in range(3):
        agent.learn(lambda n: batch)
    resumed = ResidualTD3(cfg, shapes, 1)
    load_flat_state(resumed, *flat_state(agent))
    assert (resumed.learn_calls, resumed.updates) == (3, 3)
    resumed.learn(lambda n: batch)  # the 4th call is past the warm-up: the actor moves now
    base = batch["obs"]["base_action"].clamp(-1, 1)
    assert not torch.equal(resumed.act(batch["obs"], deterministic=True), base)


def test_residual_critic_ignores_the_base_action_and_the_actor_uses_it():
    """Demos are far from the base action and always succeed: a critic seeing b could score
    "a far from b" instead of the action itself (ResFiT's critic sees only s and a)."""
    env = ResidualEnv(GymBatchedEnv("Pendulum-v1", 2), pendulum_base(), 0.2)
    shapes = {k: s for k, (s, _) in obs_shapes(env).items()}
    agent = ResidualTD3(ResidualConfig(hidden=[32, 32]), shapes, 1)
    torch.nn.init.normal_(agent.actor.net[-1].weight)  # a trained residual, not the zero one
    obs = batch_of(env)["obs"]
    moved = {**obs, "base_action": -obs["base_action"]}
    action = torch.rand(len(obs["state"]), 1) * 2 - 1
    features, moved_features = agent.encoder(obs), agent.encoder(moved)
    assert torch.equal(agent.critic(features, action), agent.critic(moved_features, action))
    residual = agent._residual(agent.actor, features, obs)
    assert not torch.equal(residual, agent._residual(agent.actor, features, moved))


def test_residual_td_targets_are_clamped_to_the_configured_return_range():
    q_next = torch.tensor([[3.0, -2.0, 0.5]]).expand(2, 3)
    reward, discount = torch.tensor([0.0, 0.0, 1.0]), torch.ones(3)
    zero = torch.zeros(())
    _, clamped = sac_critic_loss(
        torch.zeros(2, 3), q_next, zero, reward, discount, zero, False, (0.0, 1.0)
    )
    _, free = sac_critic_loss(torch.zeros(2, 3), q_next, zero, reward, discount, zero, False)
    assert clamped["q/target"].item() == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert free["q/target"].item() == pytest.approx((3.0 - 2.0 + 1.5) / 3)


@pytest.fixture(scope="module")
def reach_base(tmp_path_factory):
    """A tiny diffusion base policy trained on two Reach demos, via the CLI."""
    tmp = tmp_path_factory.mktemp("base")
    demos = tmp / "demos.zarr"
    subprocess.run(
        [*CLI, "collect", "task=reach", "task.reward_type=sparse", "episodes=2", f"out={demos}"]
        + ["progress=false"],
        check=True,
        timeout=300,
    )
    subprocess.run(
        [*CLI, "bc", f"demos={demos}", "steps=20", "eval_episodes=0", f"out={tmp / 'bc'}"]
        + ["progress=false", "policy.hidden=[32]", "policy.inference_steps=3"],
        check=True,
        timeout=300,
    )
    return tmp / "bc" / "policy", demos


@pytest.mark.parametrize("algo", ["algo=residual", "algo=dsrl algo.variant=na", "algo=dsrl"])
def test_finetune_command_runs_evaluates_and_reloads(tmp_path, reach_base, algo):
    base, demos = reach_base
    run = tmp_path / "run"
    args = [*CLI, "train", *algo.split(), "task=reach", f"base={base}", "env.reward_type=sparse"]
    args += ["total_steps=60", "learning_starts=20", "eval_every=60", "eval_episodes=2"]
    args += [f"out={run}", "progress=false", "algo.hidden=[32]", "algo.batch_size=16"]
    if algo == "algo=residual":
        args += [f"demos={demos}", "algo.critic_warmup=5"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert (run / "base" / "policy.json").exists()
    if algo == "algo=residual":  # the gripper left to the base is recorded for reloading
        saved = json.loads((run / "checkpoint" / "config.json").read_text())
        assert saved["train"]["algo"]["base_only_dims"] == [6]
        assert saved["train"]["algo"]["q_target_range"] == [0.0, 1.0]  # sparse, ends on success
    if algo.startswith("algo=dsrl"):  # both variants clamp their TD targets there
        saved = json.loads((run / "checkpoint" / "config.json").read_text())
        assert saved["train"]["algo"]["q_target_range"] == [0.0, 1.0]
    rows = (run / "eval.csv").read_text().splitlines()
    assert len(rows) == 2 and int(rows[1].split(",")[0]) >= 60
    # Resuming needs only the run directory, even moved: its settings and its copy of the base.
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    out = subprocess.run(
        [*CLI, "train", f"resume={moved}", "total_steps=120"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    saved = json.loads((moved / "checkpoint" / "config.json").read_text())
    assert saved["step"] >= 120 and saved["train"]["base"] == str(moved / "base")
    assert saved["train"]["algo"]["hidden"] == [32] and saved["train"]["out"] == str(moved)
    assert len((moved / "eval.csv").read_text().splitlines()) == 3
    run = moved
    out = subprocess.run(
        [*CLI, "eval", f"ckpt={run}", "episodes=2", "num_envs=2", f"video={tmp_path / 'v.mp4'}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "v.mp4").stat().st_size > 1000


def test_dsrl_refuses_demos_and_finetuning_needs_a_base(tmp_path, reach_base):
    base, demos = reach_base
    out = subprocess.run(
        [*CLI, "train", "algo=dsrl", "task=reach", f"base={base}", f"demos={demos}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "noise space" in out.stderr
    out = subprocess.run(
        [*CLI, "train", "algo=residual", "task=reach"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2 and "base=PATH" in out.stderr


@pytest.mark.parametrize("wrapper", [ResidualEnv, LatentSteeringEnv])
def test_a_base_policy_made_for_other_observations_is_refused(wrapper):
    env = GymBatchedEnv("MountainCarContinuous-v0", 1)  # a 2-dim state; the base observes 3
    with pytest.raises(
        ValueError, match=r"base policy was made for observations \{'state': \[3\]\}"
    ):
        wrapper(env, pendulum_base(), 0.1)


def test_non_finite_latent_is_refused_before_reaching_the_env():
    env = LatentSteeringEnv(GymBatchedEnv("Pendulum-v1", 1), pendulum_base(), 1.5)
    env.reset(seed=0)
    with pytest.raises(FloatingPointError, match="latent"):
        env.step(torch.full((1, 4), np.nan))


def test_pipeline_runs_end_to_end_and_reuses_finished_stages(tmp_path):
    out = tmp_path / "pipe"
    args = [*CLI, "pipeline", "task=reach", "demos=3", "bc_steps=20", "finetune_steps=40"]
    args += ["eval_episodes=2", f"out={out}", "progress=false"]
    args += ['bc_overrides=["policy.hidden=[32]","policy.inference_steps=3"]']
    args += ['overrides=["algo.hidden=[32]","algo.batch_size=16","learning_starts=20"]']
    first = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "base (BC)" in first.stderr and "fine-tuned (dsrl)" in first.stderr
    for name in ("learning_curve.png", "base_policy.mp4", "finetuned_policy.mp4", "summary.json"):
        assert (out / name).stat().st_size > 1000 or name == "summary.json", name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 40 and 0.0 <= summary["after"]["success_rate"] <= 1.0
    weights = out / "bc" / "policy" / "policy.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert weights.stat().st_mtime_ns == stamp  # the BC stage was reused, not retrained
    other = [a for a in args if not a.startswith("overrides")] + ["policy=mlp", "algo=residual"]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "policy='diffusion'" in refused.stderr


def test_residual_leaves_the_gripper_to_the_base_on_our_tasks():
    from robot_rl.rl.agents import wrap_env
    from robot_rl.rl.envs import make_env

    inner = Recorder(make_env("reach", 2))
    shapes = {k: s for k, (s, _) in obs_shapes(inner).items()}
    torch.manual_seed(0)
    cfg = DiffusionPolicyConfig(hidden=[32], inference_steps=2)
    base = DiffusionPolicy(cfg, shapes, 7).eval().requires_grad_(False)
    env = wrap_env(ResidualConfig(action_scale=0.2), inner, base, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        base_action = obs["base_action"].clone()
        obs, *_ = env.step(torch.ones(2, 7))
        sent = inner.actions[-1]
        assert torch.equal(sent[:, 6], base_action[:, 6])
        torch.testing.assert_close(sent[:, :6], (base_action[:, :6] + 0.2).clamp(-1, 1))
    env.close()


def test_residual_scales_per_dim_give_a_dim_its_own_authority():
    from robot_rl.rl.agents import wrap_env
    from robot_rl.rl.envs import make_env

    inner = Recorder(make_env("reach", 2))
    shapes = {k: s for k, (s, _) in obs_shapes(inner).items()}
    torch.manual_seed(0)
    base = DiffusionPolicy(DiffusionPolicyConfig(hidden=[32], inference_steps=2), shapes, 7)
    base = base.eval().requires_grad_(False)
    scales = [0.05] * 6 + [2.0]  # the gripper may be overruled whole
    algo = ResidualConfig(hidden=[32, 32], base_only_dims=[], action_scales=scales)
    env = wrap_env(algo, inner, base, seed=0)
    obs, _ = env.reset(seed=0)
    most = torch.tensor(scales)
    base_action = obs["base_action"].clone()
    obs, *_ = env.step(torch.full((2, 7), 5.0))
    torch.testing.assert_close(inner.actions[-1], (base_action + most).clamp(-1, 1))
    residual_shapes = {k: s for k, (s, _) in obs_shapes(env).items()}
    agent = ResidualTD3(algo, residual_shapes, 7)
    agent.actor.net[-1].bias.data.fill_(10.0)  # a saturated residual: +1 on every dim
    acted = agent.act(obs, deterministic=True)
    torch.testing.assert_close(acted, (obs["base_action"] + most).clamp(-1, 1))
    # exploration noise stays in action units on every dim, the wide one too
    quiet = ResidualTD3(algo, residual_shapes, 7)  # a zero residual: only the noise moves it
    many = {k: v[:1].expand(4000, *v.shape[1:]) for k, v in obs.items()}
    many["base_action"] = torch.zeros(4000, 7)  # away from the bounds: nothing is clamped
    spread = (quiet.act(many) - quiet.act(many, deterministic=True)).std(0)
    torch.testing.assert_close(spread, torch.full((7,), algo.exploration_std), rtol=0.06, atol=0)
    # the L2 term sees each dim's residual as a share of its own scale, in action_scale units
    torch.testing.assert_close(agent._l2_units(torch.ones(1, 7)), torch.full((1, 7), 0.05))
    with pytest.raises(ValueError, match="action_scales has 3 entries"):
        ResidualTD3(ResidualConfig(action_scales=[0.1] * 3), residual_shapes, 7)
    env.close()


def test_wrappers_hold_ended_episodes_until_reset_envs():
    base = pendulum_base(horizon=4)
    rows = []
    original = base.predict_action
    base.predict_action = lambda obs, **kw: rows.append(len(obs["state"])) or original(obs, **kw)
    res = ResidualEnv(GymBatchedEnv("Pendulum-v1", 2), base, 0.2, seed=0)
    lat = LatentSteeringEnv(GymBatchedEnv("Pendulum-v1", 2), base, 1.5)
    res.reset(seed=0)
    lat.reset(seed=0)
    for _ in range(200):
        obs, _, _, trunc, info = res.step(torch.zeros(2, 1), autoreset=False)
    assert bool(trunc.all()) and torch.equal(obs["state"], info["final_obs"]["state"])
    kept = obs["base_action"][1].clone()
    rows.clear()
    obs = res.reset_envs(torch.tensor([True, False]))
    assert rows == [1]  # a fresh chunk for the reset env only
    assert not torch.equal(obs["state"][0], info["final_obs"]["state"][0])
    assert torch.equal(obs["state"][1], info["final_obs"]["state"][1])
    assert torch.equal(obs["base_action"][1], kept)
    for _ in range(50):
        obs, _, _, trunc, info = lat.step(torch.zeros(2, 4), autoreset=False)
    assert bool(trunc.all()) and torch.equal(obs["state"], info["final_obs"]["state"])
    assert not torch.equal(lat.reset_envs(torch.tensor([True, True]))["state"], obs["state"])


def test_residual_demos_keep_their_executed_actions_and_gain_the_base_action():
    base = pendulum_base(horizon=4)
    env = ResidualEnv(GymBatchedEnv("Pendulum-v1", 1), base, 0.2, seed=0)
    steps = {"state": torch.randn(9, 3), "action": torch.rand(9, 1) * 2 - 1}
    steps["action"][0] = 1.0  # far from any base action: a residual could not reach it
    final = {"state": torch.randn(3)}
    new_steps, new_final = env.relabel(steps, final)
    assert torch.equal(new_steps["action"], steps["action"])
    assert new_steps["base_action"].shape == (9, 1) and new_final["base_action"].shape == (1,)
    assert float(new_steps["base_action"].abs().max()) <= 1.0
    assert not torch.equal(new_steps["base_action"], steps["action"])


def test_residual_l2_term_pulls_the_residual_toward_the_base_action():
    from robot_rl.rl.losses import ensemble_actor_loss

    residual = torch.tensor([[0.1, -0.2], [0.0, 0.3]], requires_grad=True)
    q = torch.zeros(3, 2, requires_grad=True)  # a flat critic: only the L2 term acts
    loss, metrics = ensemble_actor_loss(q, residual, l2_weight=2.0)
    torch.testing.assert_close(loss, torch.tensor(2.0 * (0.05 + 0.09) / 2))
    (grad,) = torch.autograd.grad(loss, residual)
    torch.testing.assert_close(grad, 2.0 * residual.detach())  # d/dr of w * mean_B sum_A r^2
    assert ensemble_actor_loss(q, residual)[0].item() == 0.0  # off by default (ResFiT's 0)


def test_conservative_penalty_is_zero_where_the_policy_acts_like_the_data():
    from robot_rl.rl.losses import policy_conservative_penalty

    q = torch.randn(3, 5)
    assert policy_conservative_penalty(q, q, 2.0)[0].item() == 0.0
    q_policy, q_data = q.clone().requires_grad_(), q.clone().requires_grad_()
    policy_conservative_penalty(q_policy, q_data, 2.0)[0].backward()
    torch.testing.assert_close(q_policy.grad, torch.full((3, 5), 2.0 / 5))  # pushed down
    torch.testing.assert_close(q_data.grad, torch.full((3, 5), -2.0 / 5))  # pushed up


def test_residual_conservative_term_lowers_the_critics_where_the_actor_leaves_the_data():
    env = ResidualEnv(GymBatchedEnv("Pendulum-v1", 2), pendulum_base(), 0.2)
    shapes = {k: s for k, (s, _) in obs_shapes(env).items()}
    batch = batch_of(env)
    base = batch["obs"]["base_action"].clamp(-0.5, 0.5)
    batch["action"] = base + 0.02 * torch.randn_like(base)  # the data stays near the base
    gaps = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        cfg = ResidualConfig(
            hidden=[32, 32], action_scale=0.5, critic_warmup=10**6, utd=1,
            num_critics=2, conservative_weight=weight,
        )  # fmt: skip
        agent = ResidualTD3(cfg, shapes, 1)
        torch.nn.init.normal_(agent.actor.net[-1].weight, std=10.0)  # a residual off the data
        for _ in range(150):
            agent.learn(lambda n: batch)
        policy_action = agent.act(batch["obs"], deterministic=True)
        assert (policy_action - batch["action"]).abs().mean() > 0.2
        with torch.no_grad():
            features = agent.encoder(batch["obs"])
            q = agent.critic(features.repeat(2, 1), torch.cat([policy_action, batch["action"]]))
        q_policy, q_data = q[..., 0].mean(0).chunk(2)
        gaps[weight] = (q_policy - q_data).mean().item()
    assert gaps[1.0] < gaps[0.0] - 0.15, gaps


def test_pessimistic_actor_prefers_actions_the_critics_agree_on():
    from robot_rl.rl.losses import ensemble_actor_loss

    agreed = torch.full((10, 1), 1.0)  # every critic says 1
    disputed = torch.linspace(-1.0, 3.2, 10)[:, None]  # mean 1.1, but the critics disagree
    loss = lambda q, k: ensemble_actor_loss(q, pessimism=k)[0].item()  # noqa: E731
    assert loss(disputed, 0.0) < loss(agreed, 0.0)  # the mean alone prefers the disputed one
    assert loss(agreed, 1.0) < loss(disputed, 1.0)  # the lower bound prefers the agreed one
    assert loss(agreed, 1.0) == loss(agreed, 0.0) == -1.0


@pytest.mark.parametrize(("variant", "expected"), [("sac", 8), ("na", 2)])
def test_dsrl_updates_per_chunk_default_to_the_variants_own_and_yield_to_a_setting(
    variant, expected
):
    from robot_rl.cli.main import compose
    from robot_rl.rl.agents import algo_from_dict

    overrides = ["algo=dsrl", f"algo.variant={variant}", "task=reach", "base=b"]
    algo = compose("train", overrides).algo
    assert algo.utd is None and algo.updates_per_chunk() == expected
    assert algo.as_sac().utd == expected
    reloaded = algo_from_dict({"name": "dsrl", "variant": variant, "utd": None})
    assert reloaded.updates_per_chunk() == expected
    assert compose("train", [*overrides, "algo.utd=2"]).algo.updates_per_chunk() == 2
    if variant == "na":  # the NA learner runs that many updates per chunk
        agent = DSRLNA(DSRLConfig(variant="na", hidden=[8]), {"state": (3,)}, 4, pendulum_base())
        calls = []
        agent.update = calls.append
        agent.learn(lambda n: n)
        assert calls == [agent.cfg.batch_size] * expected


@pytest.mark.parametrize("learner", ["sac", "residual", "dsrl_na"])
def test_a_critic_subset_larger_than_the_ensemble_is_a_clear_error(learner):
    with pytest.raises(ValueError, match=r"critic_subset must be in \[1, 2\], got 3"):
        if learner == "sac":
            SAC(SACConfig(num_critics=2, critic_subset=3, hidden=[8]), {"state": (3,)}, 1)
        elif learner == "residual":
            cfg = ResidualConfig(num_critics=2, critic_subset=3, hidden=[8])
            ResidualTD3(cfg, {"state": (3,), "base_action": (1,)}, 1)
        else:
            cfg = DSRLConfig(variant="na", num_critics=2, critic_subset=3, hidden=[8])
            DSRLNA(cfg, {"state": (3,)}, 4, pendulum_base())
