"""Pixel training through a frozen, pretrained image encoder (``image_encoder=``)."""

import pytest
import torch
from safetensors.torch import load_file

from robot_rl.cli.main import resume_overrides
from robot_rl.policies.base import WEIGHTS
from robot_rl.policies.mlp import MLPPolicy, MLPPolicyConfig
from robot_rl.rl.envs import make_env
from robot_rl.rl.frozen_features import FrozenFeatureEnv, load_image_encoder
from robot_rl.rl.sac import SACConfig
from robot_rl.rl.trainer import SavedRun, TrainConfig, Trainer

SIZE = 32
ENV = {"max_episode_steps": 12, "image_size": SIZE}


@pytest.fixture(scope="module")
def pixel_setup(tmp_path_factory):
    """A pixel demo store of reach and a pixel BC policy (untrained: its encoder is random but
    fixed, which is all the plumbing needs)."""
    from robot_rl.data.collect import collect_episodes
    from robot_rl.sim.experts import EXPERTS
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime

    root = tmp_path_factory.mktemp("frozen")
    task = make_task("reach", obs_mode="pixels", **ENV)
    rt = TaskRuntime(task, 2)
    demos = str(root / "d.zarr")
    collect_episodes(
        rt, lambda r, o: EXPERTS["reach"](r), 2, demos, 0, show_progress=False, max_attempts=20
    )
    rt.close()
    env = make_env("reach", 1, "pixels", "cpu", ENV)
    shapes = {k: tuple(s.shape) for k, s in env.single_observation_space.spaces.items()}
    env.close()
    torch.manual_seed(0)
    policy = MLPPolicy(MLPPolicyConfig(hidden=[16], image_feature_dim=8), shapes, 7)
    policy.save(root / "policy")
    return demos, root / "policy"


def test_features_are_the_frozen_encoders_output_and_match_the_camera_set(pixel_setup):
    _, policy_dir = pixel_setup
    encoder = load_image_encoder(str(policy_dir))
    inner = make_env("reach", 2, "pixels", "cpu", ENV)
    env = FrozenFeatureEnv(inner, encoder)
    try:
        assert set(env.single_observation_space.spaces) == {
            "proprio",
            "front_features",
            "wrist_features",
        }
        raw, _ = inner.reset(seed=3)
        obs, _ = env.reset(seed=3)
        for cam in ("front", "wrist"):
            want = encoder.encoders[cam](raw[cam])
            assert obs[cam + "_features"].shape == (2, 8)
            torch.testing.assert_close(obs[cam + "_features"], want)
        assert torch.equal(obs["proprio"], raw["proprio"])
        seen = {}
        inner_step = inner.step

        def spy(action, autoreset=True):
            out = inner_step(action, autoreset)
            seen["final"] = out[4]["final_obs"]
            return out

        inner.step = spy
        for _ in range(ENV["max_episode_steps"]):  # bootstrap observations are features too
            obs, _, term, trunc, info = env.step(torch.zeros(2, 7))
            done = term | trunc
            for cam in ("front", "wrist"):
                final, key = info["final_obs"][cam + "_features"], cam + "_features"
                want = encoder.encoders[cam](seen["final"][cam])
                torch.testing.assert_close(final[done], want[done])
                torch.testing.assert_close(final[~done], obs[key][~done])
        assert bool(done.all())  # the last step ended both episodes
    finally:
        env.close()
    with pytest.raises(ValueError, match="saw as"):  # cameras of another size
        FrozenFeatureEnv(make_env("reach", 1, "pixels", "cpu", {"image_size": 48}), encoder)
    with pytest.raises(ValueError, match="obs=pixels"):
        FrozenFeatureEnv(make_env("reach", 1, "state", "cpu"), encoder)


def test_state_policy_is_refused_as_an_image_encoder(tmp_path):
    MLPPolicy(MLPPolicyConfig(hidden=[8]), {"state": (5,)}, 2).save(tmp_path / "p")
    with pytest.raises(ValueError, match="state policy"):
        load_image_encoder(str(tmp_path / "p"))


def test_training_on_frozen_features_stores_vectors_and_keeps_the_encoder(pixel_setup, tmp_path):
    demos, policy_dir = pixel_setup
    before = load_file(str(policy_dir / WEIGHTS))
    cfg = TrainConfig(
        algo=SACConfig(num_critics=2, hidden=[32], batch_size=16, utd=1),
        task="reach",
        obs="pixels",
        env=ENV,
        demos=demos,
        image_encoder=str(policy_dir),
        total_steps=40,
        eval_every=40,
        eval_episodes=2,
        out=str(tmp_path / "run"),
        progress=False,
        log_every=20,
    )
    trainer = Trainer(cfg)
    try:
        run_dir = trainer.run()
        assert all(v.dtype == torch.float32 for v in trainer.replay.obs.values())
        assert set(trainer.replay.obs) == {"proprio", "front_features", "wrist_features"}
        # the demo frames went through the same encoder as the env's
        from robot_rl.data.episode_store import EpisodeStore

        steps, _ = EpisodeStore(demos).episode(0)
        frames = torch.from_numpy(steps["front"][:3])
        want = trainer.image_encoder.encoders["front"](frames)
        torch.testing.assert_close(trainer.demo.obs["front_features"][0][:3], want)
        used = trainer.image_encoder.state_dict()  # frozen: bit-identical after training
        assert all(torch.equal(v, before[f"encoder.{k}"]) for k, v in used.items())
        assert not any(p.requires_grad for p in trainer.image_encoder.parameters())
    finally:
        trainer.close()
    kept = load_file(str(run_dir / "image_encoder" / WEIGHTS))
    assert all(torch.equal(before[k], kept[k]) for k in before)
    run = SavedRun.load(run_dir)  # the run's own copy of the encoder
    assert 0.0 <= run.evaluate(episodes=2, num_envs=2)["success_rate"] <= 1.0
    restored = resume_overrides([f"resume={run_dir}"])
    assert f'image_encoder="{run_dir / "image_encoder"}"' in restored
