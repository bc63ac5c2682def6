"""Base policies: chunk windows, DDIM determinism, checkpoints with their normalisers, and the
``robot-rl bc`` command."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from robot_rl.data.episode_store import EpisodeStore, schema_of
from robot_rl.data.sequences import ChunkDataset
from robot_rl.policies import (
    DiffusionPolicy,
    DiffusionPolicyConfig,
    MLPPolicy,
    MLPPolicyConfig,
    load_policy,
)
from robot_rl.policies.diffusion import cosine_alpha_bars
from robot_rl.policies.runner import ChunkRunner

CLI = [sys.executable, "-m", "robot_rl.cli.main"]


def write_store(path, lengths, obs_dim=3, action_dim=2):
    """Episodes whose observation and action at step t of episode e encode (e, t)."""
    steps = {
        "state": np.zeros((1, obs_dim), np.float32),
        "action": np.zeros((1, action_dim), np.float32),
        "reward": np.zeros(1, np.float32),
        "terminated": np.zeros(1, bool),
        "truncated": np.zeros(1, bool),
    }
    store = EpisodeStore.create_or_append(
        path, schema_of(steps), schema_of({"state": steps["state"][0]}, False), {"task": "toy"}
    )
    for e, n in enumerate(lengths):
        t = np.arange(n, dtype=np.float32)
        ep = {
            "state": np.stack([np.full(n, e), t, t * 0 + 1], 1).astype(np.float32),
            "action": np.stack([np.full(n, e), t], 1).astype(np.float32),
            "reward": np.zeros(n, np.float32),
            "terminated": np.zeros(n, bool),
            "truncated": np.zeros(n, bool),
        }
        store.add_episode(ep, {"state": np.array([e, n, 1], np.float32)})
    return path


def test_chunk_windows_pad_at_episode_edges_and_never_cross(tmp_path):
    data = ChunkDataset([write_store(tmp_path / "d.zarr", [5, 3])], 2, 4)
    assert len(data) == 8
    batch = data.get(torch.arange(len(data)))
    obs, act = batch["obs"]["state"], batch["action"]
    assert obs.shape == (8, 2, 3) and act.shape == (8, 4, 2)
    # every window stays inside its episode
    assert torch.all(obs[:, :, 0] == obs[:, -1:, 0]) and torch.all(act[:, :, 0] == obs[:, -1:, 0])
    # first step repeats its observation; the last steps repeat the final action
    torch.testing.assert_close(obs[0, :, 1], torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(obs[1, :, 1], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(act[3, :, 1], torch.tensor([3.0, 4.0, 4.0, 4.0]))
    torch.testing.assert_close(act[5, :, 1], torch.tensor([0.0, 1.0, 2.0, 2.0]))


def test_cosine_schedule_is_monotone_and_ends_near_pure_noise():
    ab = cosine_alpha_bars(100)
    assert torch.all(ab[1:] < ab[:-1]) and ab[0] > 0.999 and ab[-1] < 1e-3


def small_diffusion(obs_dim=5, action_dim=3, horizon=4, seed=0):
    torch.manual_seed(seed)
    cfg = DiffusionPolicyConfig(action_horizon=horizon, hidden=[64, 64], inference_steps=5)
    return DiffusionPolicy(cfg, {"state": (obs_dim,)}, action_dim).eval()


def test_ddim_is_deterministic_given_the_noise_and_stays_in_bounds():
    policy = small_diffusion()
    obs = {"state": torch.randn(6, 1, 5)}
    noise = torch.randn(6, 4 * 3) * 3
    a, b = policy.predict_action(obs, noise=noise), policy.predict_action(obs, noise=noise)
    assert torch.equal(a, b) and a.shape == (6, 4, 3)
    assert not torch.equal(a, policy.predict_action(obs, noise=torch.randn(6, 12)))
    assert float(a.abs().max()) <= 1.0


def test_policy_checkpoint_round_trips_with_its_normaliser(tmp_path):
    for policy in (small_diffusion(), MLPPolicy(MLPPolicyConfig(hidden=[32]), {"state": (5,)}, 3)):
        policy.fit_normalizer({"state": torch.randn(500, 5) * 4 + 2})
        policy.save(tmp_path / policy.kind)
        loaded = load_policy(tmp_path / policy.kind)
        assert torch.equal(loaded.encoder.norm.mean, policy.encoder.norm.mean)
        assert float(loaded.encoder.norm.mean.abs().min()) > 1.0  # real statistics, not defaults
        obs = {"state": torch.randn(4, 1, 5)}
        noise = torch.randn(4, policy.action_horizon * 3)
        expect = policy.predict_action(obs, noise=noise)
        assert torch.equal(loaded.predict_action(obs, noise=noise), expect)
        assert not any(p.requires_grad for p in loaded.parameters())


def test_runner_executes_chunks_open_loop_and_resets_queues_at_episode_start():
    policy = small_diffusion(horizon=3)
    runner = ChunkRunner(policy, 2, seed=0)
    calls = []
    original = policy.predict_action
    policy.predict_action = lambda obs, **kw: calls.append(len(obs["state"])) or original(obs, **kw)
    for _ in range(3):
        runner.act({"state": torch.randn(2, 5)})
    assert calls == [2]  # one prediction for both envs, then the queue runs open loop
    runner.episode_done(torch.tensor([True, False]))
    runner.act({"state": torch.randn(2, 5)})
    assert calls == [2, 2]  # env 1's queue ran out; env 0 was reset: both predict


def test_bc_gaussian_head_learns_a_constant_chunk():
    torch.manual_seed(0)
    policy = MLPPolicy(
        MLPPolicyConfig(hidden=[32], gaussian=True, action_horizon=2), {"s": (2,)}, 1
    )
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    batch = {"obs": {"s": torch.randn(64, 1, 2)}, "action": torch.full((64, 2, 1), 0.5)}
    for _ in range(300):
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = policy.predict_action(batch["obs"], deterministic=True)
    torch.testing.assert_close(out, batch["action"], atol=0.05, rtol=0)
    assert float(policy._head(policy.condition(batch["obs"]))[1].exp().max()) < 0.1


@pytest.mark.parametrize("policy", ["mlp", "diffusion"])
def test_bc_command_trains_saves_and_evaluates(tmp_path, policy):
    demos = tmp_path / "demos.zarr"
    subprocess.run(
        [*CLI, "collect", "task=reach", "episodes=2", f"out={demos}", "progress=false"],
        check=True,
        timeout=300,
    )
    out = subprocess.run(
        [*CLI, "bc", f"policy={policy}", f"demos={demos}", "steps=30", "eval_episodes=2"]
        + [f"out={tmp_path / 'bc'}", "progress=false", "policy.hidden=[32]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "success" in out.stdout + out.stderr
    loaded = load_policy(tmp_path / "bc" / "policy")
    assert loaded.kind == policy and set(loaded.obs_shapes) == {"state"}
    recipe = json.loads((tmp_path / "bc" / "policy" / "policy.json").read_text())["train"]
    assert recipe == {**recipe, "steps": 30, "batch_size": 256, "seed": 0}


@pytest.mark.parametrize("kind", ["mlp", "diffusion"])
def test_pixel_conditioning_trains_the_conv_encoder(kind):
    torch.manual_seed(0)
    shapes = {"front": (64, 64, 3), "state": (4,)}
    if kind == "mlp":
        policy = MLPPolicy(MLPPolicyConfig(hidden=[32], obs_horizon=2), shapes, 3)
    else:
        cfg = DiffusionPolicyConfig(hidden=[32], obs_horizon=2, inference_steps=3)
        policy = DiffusionPolicy(cfg, shapes, 3)
    obs = {
        "front": torch.randint(0, 255, (8, 2, 64, 64, 3), dtype=torch.uint8),
        "state": torch.randn(8, 2, 4),
    }
    loss, _ = policy.compute_loss({"obs": obs, "action": torch.rand(8, 4, 3) * 2 - 1})
    loss.backward()
    conv = policy.encoder.encoders["front"].convs[0].weight
    assert conv.grad is not None and float(conv.grad.abs().sum()) > 0
    assert policy.predict_action(obs).shape == (8, 4, 3)
