"""Acting and learning as two processes, with nothing unpickled across the boundary.

- Transitions go actor -> learner as safetensors bytes over a ``multiprocessing`` connection
  (``send_bytes``/``recv_bytes``: raw bytes, never pickle).
- Each message is one batched env step in the replay's layout (``env_step_message``); the
  learner moves what has arrived into its replay with ``store_received`` between updates.
- Weights go learner -> actor as versioned safetensors snapshots in a directory: the learner
  writes ``weights-<version>.safetensors`` atomically and then points ``LATEST`` at it; the actor
  polls and loads a newer snapshot between steps, without stopping.

In-process training (the default) uses neither; these are the pieces the ROS 2 actor and
learner nodes build on.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load, load_file, save, save_file
from torch import nn

from robot_rl.rl.replay import ReplayBuffer

LATEST = "LATEST"


class PeerGone(ConnectionError):
    """The process at the other end of a transition link exited or closed the link."""


def encode_transition(transition: dict[str, torch.Tensor]) -> bytes:
    """Flat dict of tensors (nested dicts joined with '.') -> bytes. Entries may be the same
    tensor (an env's final observation where no episode ended, one flag tensor for two
    fields): safetensors refuses shared memory, so each repeat is sent as its own copy."""
    flat, storages = {}, set()
    for key, value in transition.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, tensor in items:
            tensor = tensor.contiguous().cpu()
            if tensor.untyped_storage().data_ptr() in storages:
                tensor = tensor.clone()
            storages.add(tensor.untyped_storage().data_ptr())
            flat[key if sub is None else f"{key}.{sub}"] = tensor
    return save(flat)


def decode_transition(data: bytes) -> dict:
    out: dict = {}
    for key, value in load(data).items():
        head, _, tail = key.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


def env_step_message(
    obs: dict[str, torch.Tensor],
    action: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    final_obs: dict[str, torch.Tensor],
) -> dict:
    """One step of the actor's N envs as ``ReplayBuffer.add`` takes it: the observations acted
    on, the actions (N, A), reward/terminated/truncated (N,), and ``info["final_obs"]``."""
    return {
        "obs": obs,
        "action": action,
        "reward": reward,
        "terminated": terminated,
        "truncated": truncated,
        "final_obs": final_obs,
    }


def store_received(
    receiver: TransitionReceiver, replay: ReplayBuffer, limit: int = 10_000
) -> list[dict]:
    """Learner side: move the env steps waiting on ``receiver`` (at most ``limit``) into
    ``replay``, in the order sent; returns them (with any other entries the actor added, e.g.
    the version of the weights it acted with). Once the actor has gone, the call that stores
    its last steps returns them, and the next raises ``PeerGone``."""
    stored = []
    while len(stored) < limit and receiver.poll():  # poll is also True at the link's end
        try:
            step = receiver.receive()
        except PeerGone:
            if stored:
                break  # hand these over; the next call finds the end again
            raise
        replay.add(
            step["obs"],
            step["action"],
            step["reward"],
            step["terminated"],
            step["truncated"],
            step["final_obs"],
        )
        stored.append(step)
    return stored


class WeightPublisher:
    """Learner side: publish the policy's weights as numbered snapshots."""

    def __init__(self, directory: str | Path, keep: int = 3):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.version = 0
        self.keep = keep

    def publish(self, module: nn.Module) -> int:
        self.version += 1
        name = f"weights-{self.version:08d}.safetensors"
        tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        save_file(tensors, str(self.dir / (name + ".tmp")), metadata={"version": str(self.version)})
        os.replace(self.dir / (name + ".tmp"), self.dir / name)
        (self.dir / (LATEST + ".tmp")).write_text(name)
        os.replace(self.dir / (LATEST + ".tmp"), self.dir / LATEST)
        for old in sorted(self.dir.glob("weights-*.safetensors"))[: -self.keep]:
            old.unlink(missing_ok=True)
        return self.version


class WeightSubscriber:
    """Actor side: load a newer snapshot into ``module`` when one exists."""

    def __init__(self, directory: str | Path, module: nn.Module):
        self.dir = Path(directory)
        self.module = module
        self.version = 0

    def poll(self) -> bool:
        """True if newer weights were loaded."""
        try:
            name = (self.dir / LATEST).read_text().strip()
            version = int(name.removeprefix("weights-").removesuffix(".safetensors"))
            if version <= self.version:
                return False
            tensors = load_file(str(self.dir / name))
        except (FileNotFoundError, ValueError):
            return False  # nothing published yet, or a snapshot rotated away mid-read
        self.module.load_state_dict(tensors)
        self.version = version
        return True


class TransitionReceiver:
    """Learner side: accept one actor on a local socket and read its transitions."""

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0), authkey: bytes = b"robot_rl"):
        from multiprocessing.connection import Listener

        self._listener = Listener(address, authkey=authkey)
        self.address = self._listener.address
        self._conn = None

    def accept(self) -> None:
        self._conn = self._listener.accept()

    def poll(self, timeout: float = 0.0) -> bool:
        """True if a transition is waiting, or the actor has gone (``receive`` then raises)."""
        return self._conn is not None and self._conn.poll(timeout)

    def receive(self) -> dict:
        try:
            return decode_transition(self._conn.recv_bytes())
        except (EOFError, OSError) as e:
            raise PeerGone(
                f"the actor on {self.address} closed the link ({type(e).__name__}); every "
                "transition received before this is in the replay"
            ) from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._listener.close()


class TransitionSender:
    """Actor side: send transitions to the learner as safetensors bytes."""

    def __init__(self, address: tuple[str, int], authkey: bytes = b"robot_rl"):
        from multiprocessing.connection import Client

        self.address = address
        try:
            self._conn = Client(address, authkey=authkey)
        except OSError as e:
            raise PeerGone(f"no learner listening on {address}: {e}") from e
        self.sent = 0

    def send(self, transition: dict) -> None:
        """Send one transition; raises ``PeerGone`` if the learner has exited, saying how many
        transitions were sent, so the actor can stop the robot and keep its own records."""
        try:
            self._conn.send_bytes(encode_transition(transition))
        except OSError as e:
            raise PeerGone(
                f"the learner on {self.address} is gone ({type(e).__name__}) after "
                f"{self.sent} transitions were sent (the last few may not have arrived)"
            ) from e
        self.sent += 1

    def close(self) -> None:
        self._conn.close()
