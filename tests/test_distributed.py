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
)
from robot_rl.rl.sac import SAC, SACConfig

CFG = SACConfig(num_critics=2, hidden=[16])

ACTOR = textwrap.dedent("""
    import sys, time, torch, gymnasium as gym
    from robot_rl.rl.distributed import TransitionSender, WeightSubscriber
    from robot_rl.rl.sac import SAC, SACConfig
    host, port, weights = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    agent = SAC(SACConfig(num_critics=2, hidden=[16]), {"state": (3,)}, 1)
    sub = WeightSubscriber(weights, agent)
    sender = TransitionSender((host, port))
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    deadline = time.time() + 60
    for t in range(200):
        sub.poll()  # new weights between steps, without stopping
        o = torch.as_tensor(obs, dtype=torch.float32)[None]
        action = agent.act({"state": o})
        obs, reward, term, trunc, _ = env.step(2 * action[0].numpy())
        sender.send({"obs": {"state": o}, "action": action,
                     "reward": torch.tensor([reward], dtype=torch.float32),
                     "version": torch.tensor([sub.version])})
        time.sleep(0.01)
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


def test_actor_process_streams_transitions_and_follows_new_weights(tmp_path):
    learner = SAC(CFG, {"state": (3,)}, 1)
    pub = WeightPublisher(tmp_path / "weights")
    pub.publish(learner)
    receiver = TransitionReceiver()
    host, port = receiver.address
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTOR, host, str(port), str(tmp_path / "weights")]
    )
    try:
        receiver.accept()
        versions = []
        while len(versions) < 200:
            if receiver.poll(30):
                t = receiver.receive()
                versions.append(int(t["version"][0]))
                assert t["obs"]["state"].shape == (1, 3)
                if len(versions) % 50 == 0:
                    pub.publish(learner)  # the learner publishes while the actor runs
            else:
                raise AssertionError("actor went quiet")
        assert proc.wait(timeout=60) == 0
    finally:
        receiver.close()
        proc.kill()
    assert versions[0] == 1 and max(versions) >= 3
    assert versions == sorted(versions)  # versions only move forward


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
