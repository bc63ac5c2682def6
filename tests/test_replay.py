"""Replay: n-step targets, termination vs truncation, episode boundaries, demo mix, resume."""

import pytest
import torch

from robot_rl.rl.replay import ReplayBuffer, mixed_batch

SHAPES = {"state": ((1,), torch.float32), "img": ((2, 2, 3), torch.uint8)}


def obs(values):
    v = torch.as_tensor(values, dtype=torch.float32).reshape(-1, 1)
    return {"state": v, "img": v.to(torch.uint8)[:, :, None, None].expand(-1, 2, 2, 3)}


def rollout(buffer, length, term_at=None, trunc_at=None, start=0):
    """One env: observations count up from ``start``; reward = obs value."""
    for t in range(length):
        o = start + t
        term = torch.tensor([t == term_at])
        trunc = torch.tensor([t == trunc_at])
        buffer.add(
            obs([o]),
            torch.tensor([[float(o)]]),
            torch.tensor([float(o)]),
            term,
            trunc,
            obs([1000 + o]),
        )


def all_transitions(buffer):
    valid = buffer.valid_starts()
    env, slot = torch.nonzero(valid, as_tuple=True)
    return buffer._gather(env, slot)


def test_truncated_bootstraps_terminated_does_not():
    buf = ReplayBuffer(SHAPES, 1, 1, 32, gamma=0.9)
    rollout(buf, 3, trunc_at=2)
    rollout(buf, 2, term_at=1, start=10)
    b = all_transitions(buf)
    by_obs = {
        int(o): (float(d), float(n))
        for o, d, n in zip(
            b["obs"]["state"][:, 0], b["discount"], b["next_obs"]["state"][:, 0], strict=True
        )
    }
    assert by_obs[2] == (pytest.approx(0.9), 1002.0)  # truncated: bootstrap from final obs
    assert by_obs[11][0] == 0.0  # terminated: no bootstrap
    assert by_obs[0] == (pytest.approx(0.9), 1.0)


def test_samples_never_cross_episode_boundaries_and_frames_are_stored_once():
    buf = ReplayBuffer(SHAPES, 1, 1, 64, gamma=0.9)
    rollout(buf, 4, trunc_at=3)
    rollout(buf, 4, term_at=3, start=10)
    b = all_transitions(buf)
    assert len(b["action"]) == 8
    for o, nxt in zip(b["obs"]["state"][:, 0], b["next_obs"]["state"][:, 0], strict=False):
        assert int(nxt) in (int(o) + 1, 1000 + int(o))
    # 8 steps + 2 final observations = 10 slots; no next observation was stored twice
    assert int(buf.written.sum()) == 10
    torch.testing.assert_close(
        b["next_obs"]["img"][:, 0, 0, 0].float(), (b["next_obs"]["state"][:, 0] % 256)
    )


def test_n_step_masks_after_done_and_uses_gamma_n_eff():
    buf = ReplayBuffer(SHAPES, 1, 1, 64, gamma=0.5, n_step=3)
    rollout(buf, 4, term_at=3)  # rewards 0 1 2 3, terminal at the 4th step
    rollout(buf, 2, start=20)  # a new episode, still running
    b = all_transitions(buf)
    rows = {int(o): i for i, o in enumerate(b["obs"]["state"][:, 0])}
    i = rows[0]  # 3 full steps: 0 + .5*1 + .25*2, bootstrap gamma^3 from obs 3
    assert float(b["reward"][i]) == 0.0 + 0.5 * 1 + 0.25 * 2
    assert float(b["discount"][i]) == 0.125 and int(b["next_obs"]["state"][i]) == 3
    i = rows[2]  # 2 + .5*3 then terminal: no bootstrap, no reward from the next episode
    assert float(b["reward"][i]) == 2 + 0.5 * 3 and float(b["discount"][i]) == 0.0
    assert int(b["n_eff"][i]) == 2


def test_n_step_never_reads_past_the_write_pointer():
    buf = ReplayBuffer(SHAPES, 1, 1, 64, gamma=0.5, n_step=5)
    rollout(buf, 3)  # the episode is still running; obs 3 not stored yet
    b = all_transitions(buf)
    rows = {int(o): i for i, o in enumerate(b["obs"]["state"][:, 0])}
    assert set(rows) == {0, 1}  # the newest step has no stored next observation yet
    i = rows[0]
    assert int(b["n_eff"][i]) == 2 and int(b["next_obs"]["state"][i]) == 2
    assert float(b["discount"][i]) == 0.25


def test_ring_overwrite_keeps_only_complete_transitions():
    buf = ReplayBuffer(SHAPES, 1, 1, 5, gamma=0.9)
    rollout(buf, 12)
    b = all_transitions(buf)
    assert len(b["action"]) > 0
    for o, nxt in zip(b["obs"]["state"][:, 0], b["next_obs"]["state"][:, 0], strict=False):
        assert int(nxt) == int(o) + 1


def test_batches_are_drawn_evenly_across_envs():
    buf = ReplayBuffer(SHAPES, 1, 4, 32)
    for t in range(10):
        buf.add(
            obs([t] * 4),
            torch.zeros(4, 1),
            torch.zeros(4),
            torch.zeros(4, dtype=torch.bool),
            torch.zeros(4, dtype=torch.bool),
            obs([0] * 4),
        )
    batch = buf.sample(64)
    assert torch.bincount(batch["env"], minlength=4).tolist() == [16, 16, 16, 16]


def test_demo_online_ratio():
    online = ReplayBuffer(SHAPES, 1, 1, 32)
    demo = ReplayBuffer(SHAPES, 1, 1, 32)
    rollout(online, 5)
    rollout(demo, 5, start=100)
    batch = mixed_batch(online.sample(96), demo.sample(32))
    from_demo = (batch["obs"]["state"][:, 0] >= 100).float().mean()
    assert float(from_demo) == 0.25


def test_save_and_resume(tmp_path):
    buf = ReplayBuffer(SHAPES, 1, 2, 16, n_step=2)
    for t in range(7):
        buf.add(
            obs([t, t]),
            torch.full((2, 1), float(t)),
            torch.ones(2),
            torch.tensor([False, t == 4]),
            torch.zeros(2, dtype=torch.bool),
            obs([50, 60]),
        )
    buf.save(tmp_path / "r.safetensors")
    again = ReplayBuffer(SHAPES, 1, 2, 16, n_step=2)
    again.load(tmp_path / "r.safetensors")
    for name in ("action", "reward", "terminated", "written", "ptr", "total"):
        assert torch.equal(getattr(buf, name), getattr(again, name))
    g = torch.Generator().manual_seed(0)
    a = buf.sample(8, torch.Generator().manual_seed(0))
    b = again.sample(8, g)
    torch.testing.assert_close(a["reward"], b["reward"])


def every_transition(buffer):
    """(obs, next_obs, reward, discount) of every stored transition, in slot order."""
    b = all_transitions(buffer)
    return [b["obs"]["state"], b["next_obs"]["state"], b["reward"], b["discount"]]


def test_saved_replay_holds_only_written_slots_and_resumes_into_a_longer_run(tmp_path):
    buf = ReplayBuffer(SHAPES, 1, 1, 10_000, gamma=0.9, n_step=2)
    rollout(buf, 30, term_at=12)
    buf.save(tmp_path / "r.safetensors")
    assert buf.state_dict()["obs.img"].shape == (1, 31, 2, 2, 3)  # 30 steps + a final obs
    for capacity in (40, 10_000, 50_000):  # a resumed run may allot another capacity
        again = ReplayBuffer(SHAPES, 1, 1, capacity, gamma=0.9, n_step=2)
        again.load(tmp_path / "r.safetensors")
        for a, b in zip(every_transition(buf), every_transition(again), strict=True):
            assert torch.equal(a, b)
        rollout(again, 3, start=500)  # writing goes on after the restored slots
        assert int(again.ptr[0]) == 34 and bool(again.written[0, :34].all())
        # a resumed run starts new episodes: step 29 never got its next observation, so it
        # starts no transition, and no 2-step sum runs from 28 through it into step 500
        first, after, _, _ = every_transition(again)
        assert first.flatten().tolist()[-4:] == [27.0, 28.0, 500.0, 501.0]
        assert after.flatten().tolist()[-4:] == [29.0, 29.0, 502.0, 502.0]
    with pytest.raises(ValueError, match="31 written"):  # more than a smaller buffer holds
        ReplayBuffer(SHAPES, 1, 1, 31, gamma=0.9, n_step=2).load(tmp_path / "r.safetensors")


def test_wrapped_replay_loads_only_into_its_own_shape(tmp_path):
    buf = ReplayBuffer(SHAPES, 1, 1, 16)
    rollout(buf, 40)
    buf.save(tmp_path / "r.safetensors")
    same = ReplayBuffer(SHAPES, 1, 1, 16)
    same.load(tmp_path / "r.safetensors")
    for a, b in zip(every_transition(buf), every_transition(same), strict=True):
        assert torch.equal(a, b)
    for other in (ReplayBuffer(SHAPES, 1, 1, 64), ReplayBuffer(SHAPES, 1, 2, 16)):
        with pytest.raises(ValueError, match="replay_capacity it was saved with"):
            other.load(tmp_path / "r.safetensors")


def test_storage_the_device_cannot_hold_is_refused_before_allocating():
    frames = {"front": ((128, 128, 3), torch.uint8)}
    with pytest.raises(ValueError, match="lower replay_capacity"):
        ReplayBuffer(frames, 7, 1, 10**9)  # ~49 TB of frames


def test_a_run_allots_no_more_slots_than_it_can_fill():
    from robot_rl.rl.trainer import replay_slots_per_env

    assert replay_slots_per_env(200_000, 20_000, 1) == 40_002
    assert replay_slots_per_env(200_000, 1_000, 16) == 2 * 63 + 2
    assert replay_slots_per_env(1_000, 20_000, 4) == 250
