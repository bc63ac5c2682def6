"""Acting and learning as two processes: transitions in, versioned weights out, no pickle."""

import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from robot_rl.rl.distributed import (
    PeerGone,
    TransitionReceiver,
    TransitionSender,
    WeightPublisher,
    WeightSubscriber,
    decode_transition,
    encode_transition,
    store_received,
)
from robot_rl.rl.replay import ReplayBuffer
from robot_rl.rl.sac import SAC, SACConfig

CFG = SACConfig(num_critics=2, hidden=[16], compile="off")

ACTOR = textwrap.dedent("""
    import sys, time, torch
    from robot_rl.rl.distributed import TransitionSender, WeightSubscriber, env_step_message
    from robot_rl.rl.envs import make_env
    from robot_rl.rl.sac import SAC, SACConfig
    host, port, weights = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    agent = SAC(SACConfig(num_critics=2, hidden=[16], compile="off"), {"state": (3,)}, 1)
    sub = WeightSubscriber(weights, agent)
    sender = TransitionSender((host, port))
    env = make_env("gym:Pendulum-v1", 2, overrides={"max_episode_steps": 50})
    obs, _ = env.reset(seed=0)
    for t in range(100):
        sub.poll()  # new weights between steps, without stopping
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        step = env_step_message(obs, action, reward, terminated, truncated, info["final_obs"])
        sender.send({**step, "version": torch.tensor([sub.version])})
        obs = next_obs
        time.sleep(0.02)
    sender.close()
""")


def test_transition_bytes_round_trip():
    t = {
        "obs": {"state": torch.randn(2, 3), "front": torch.zeros(2, 4, 4, 3, dtype=torch.uint8)},
        "action": torch.randn(2, 1),
        "reward": torch.randn(2),
    }
    back = decode_transition(encode_transition(t))
    for key in ("action", "reward"):
        assert torch.equal(back[key], t[key])
    for key in t["obs"]:
        assert torch.equal(back["obs"][key], t["obs"][key])


def test_snapshots_are_versioned_and_picked_up(tmp_path):
    learner = SAC(CFG, {"state": (3,)}, 1)
    actor = SAC(CFG, {"state": (3,)}, 1)
    pub, sub = WeightPublisher(tmp_path, keep=2), WeightSubscriber(tmp_path, actor)
    assert not sub.poll()  # nothing yet
    for _ in range(3):
        pub.publish(learner)
    assert sub.poll() and sub.version == 3 and not sub.poll()
    for a, b in zip(actor.state_dict().values(), learner.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len(list(tmp_path.glob("weights-*.safetensors"))) == 2  # old ones rotated away


def test_learner_stores_an_actor_processs_env_steps_learns_and_the_actor_follows(tmp_path):
    learner = SAC(CFG, {"state": (3,)}, 1)
    replay = ReplayBuffer({"state": ((3,), torch.float32)}, 1, num_envs=2, capacity_per_env=200)
    pub = WeightPublisher(tmp_path / "weights")
    pub.publish(learner)
    receiver = TransitionReceiver()
    host, port = receiver.address
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTOR, host, str(port), str(tmp_path / "weights")]
    )
    versions, updates = [], 0
    try:
        receiver.accept()
        while len(versions) < 100:
            if not receiver.poll(30):
                raise AssertionError("actor went quiet")
            for step in store_received(receiver, replay):
                versions.append(int(step["version"][0]))
                if len(versions) % 25 == 0:
                    pub.publish(learner)  # the learner publishes while the actor runs
            if bool(replay.valid_starts().any(1).all()):
                learner.learn(replay.sample)
                updates += 1
        assert proc.wait(timeout=60) == 0
        with pytest.raises(PeerGone, match="every transition received before this"):
            store_received(receiver, replay)
    finally:
        receiver.close()
        proc.kill()
    assert updates > 0
    assert versions[0] == 1 and max(versions) >= 3
    assert versions == sorted(versions)  # versions only move forward
    # every step is in the replay as the in-process trainer would store it: two envs of 100
    # steps, each ending two 50-step episodes at the time limit (bootstrapping from its final
    # observation, written to the slot after the last step)
    assert replay.total.tolist() == [102, 102]
    assert int(replay.valid_starts().sum()) == 200
    ends = replay.truncated.nonzero()
    assert ends[:, 1].tolist() == [49, 100, 49, 100] and not bool(replay.terminated.any())
    assert not bool(replay.has_action[ends[:, 0], ends[:, 1] + 1].any())


def connected_pair() -> tuple[TransitionReceiver, TransitionSender]:
    receiver = TransitionReceiver()
    accepting = threading.Thread(target=receiver.accept)
    accepting.start()
    sender = TransitionSender(receiver.address)
    accepting.join(timeout=10)
    return receiver, sender


def test_a_dead_learner_is_a_clear_error_for_the_actor():
    receiver, sender = connected_pair()
    t = {"action": torch.zeros(1, 2)}
    sender.send(t)
    assert torch.equal(receiver.receive()["action"], t["action"])
    receiver.close()  # the learner exits
    with pytest.raises(PeerGone, match="learner .* is gone"):
        for _ in range(1000):  # the first writes may still land in the socket buffer
            sender.send(t)
    with pytest.raises(PeerGone, match="no learner listening"):
        TransitionSender(receiver.address)


def test_a_dead_actor_is_a_clear_error_for_the_learner():
    receiver, sender = connected_pair()
    sender.send({"action": torch.ones(1, 2)})
    sender.close()  # the actor exits
    assert receiver.poll(5)
    assert torch.equal(receiver.receive()["action"], torch.ones(1, 2))  # delivered before exit
    assert receiver.poll(5)
    with pytest.raises(PeerGone, match="actor .* closed the link"):
        receiver.receive()
    receiver.close()


def test_the_last_steps_of_an_actor_that_has_gone_are_returned_before_peer_gone():
    from robot_rl.rl.distributed import env_step_message

    receiver, sender = connected_pair()
    replay = ReplayBuffer({"state": ((3,), torch.float32)}, 1, num_envs=1, capacity_per_env=10)
    no = torch.zeros(1, dtype=torch.bool)
    for t in range(3):
        obs = {"state": torch.full((1, 3), float(t))}
        # final_obs is obs and one flag tensor serves both flags, as our envs hand them over
        # where no episode ended: shared memory, which safetensors alone refuses
        step = env_step_message(obs, torch.zeros(1, 1), torch.ones(1), no, no, obs)
        sender.send({**step, "t": torch.tensor([t])})
    sender.close()  # the actor exits with its steps still in the link
    assert receiver.poll(5)
    got = store_received(receiver, replay)  # they come back, not lost in the PeerGone
    assert [int(s["t"][0]) for s in got] == [0, 1, 2] and replay.total.tolist() == [3]
    with pytest.raises(PeerGone, match="every transition received before this"):
        store_received(receiver, replay)
    receiver.close()
