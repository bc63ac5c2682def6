"""Device-resident replay for N parallel env streams, storing every frame once.

Each env has its own time-ordered ring of slots. A slot holds the observation at that time and,
if an action was taken from it, the action, reward and done flags. When an episode ends, its
final observation is written to one extra slot with no action, so a transition's next
observation is always the next slot of the same stream: frames are never duplicated, and samples
never cross episode boundaries.

n-step targets stop at the first terminated/truncated step, use gamma^n_eff, and never read past
the newest written slot. ``discount`` in a batch is gamma^n_eff for bootstrapping transitions
(truncation included) and 0 after a true termination.

Shapes: storage (N, C, ...) with C slots per env; batches (B, ...).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

Obs = dict[str, torch.Tensor]


class ReplayBuffer:
    def __init__(
        self,
        obs_shapes: dict[str, tuple[tuple[int, ...], torch.dtype]],
        action_dim: int,
        num_envs: int,
        capacity_per_env: int,
        gamma: float = 0.99,
        n_step: int = 1,
        device: str | torch.device = "cpu",
    ):
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        self.num_envs, self.capacity, self.gamma, self.n_step = (
            num_envs,
            capacity_per_env,
            gamma,
            n_step,
        )
        self.device = torch.device(device)
        n, c = num_envs, capacity_per_env
        check_fits(n * c * slot_bytes(obs_shapes, action_dim), self.device)
        self.obs = {
            k: torch.zeros((n, c, *shape), dtype=dtype, device=self.device)
            for k, (shape, dtype) in obs_shapes.items()
        }
        self.action = torch.zeros((n, c, action_dim), device=self.device)
        self.reward = torch.zeros((n, c), device=self.device)
        self.terminated = torch.zeros((n, c), dtype=torch.bool, device=self.device)
        self.truncated = torch.zeros((n, c), dtype=torch.bool, device=self.device)
        self.has_action = torch.zeros((n, c), dtype=torch.bool, device=self.device)
        self.written = torch.zeros((n, c), dtype=torch.bool, device=self.device)
        self.ptr = torch.zeros(n, dtype=torch.long, device=self.device)  # next slot per env
        self.total = torch.zeros(n, dtype=torch.long, device=self.device)  # slots ever written
        self._all = torch.arange(n, device=self.device)

    # -- writing ------------------------------------------------------------------------------
    def _write(
        self,
        rows: torch.Tensor,
        obs: Obs,
        action=None,
        reward=None,
        terminated=None,
        truncated=None,
    ) -> None:
        """Write one slot for each env in ``rows`` at its pointer, then advance those pointers."""
        p = self.ptr[rows]
        for k, v in obs.items():
            self.obs[k][rows, p] = v.to(self.device, self.obs[k].dtype)
        self.written[rows, p] = True
        self.has_action[rows, p] = action is not None
        if action is not None:
            self.action[rows, p] = action.to(self.device, torch.float32)
            self.reward[rows, p] = reward.to(self.device, torch.float32)
            self.terminated[rows, p] = terminated.to(self.device)
            self.truncated[rows, p] = truncated.to(self.device)
        self.ptr[rows] = (p + 1) % self.capacity
        self.total[rows] += 1
        self.written[rows, self.ptr[rows]] = False  # the slot to be overwritten next is gone

    def add(
        self,
        obs: Obs,
        action: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        final_obs: Obs | None = None,
    ) -> None:
        """One step of all N envs from ``obs`` with ``action``. Where an episode ended,
        ``final_obs`` holds its last observation (``info["final_obs"]`` of the batched API)."""
        self._write(self._all, obs, action, reward, terminated, truncated)
        done = (terminated | truncated).to(self.device)
        if bool(done.any()):
            if final_obs is None:
                raise ValueError("final_obs is required when an episode ends")
            rows = torch.nonzero(done).flatten()
            self._write(rows, {k: v.to(self.device)[rows] for k, v in final_obs.items()})

    def add_episode(self, steps: dict[str, torch.Tensor], final_obs: Obs, obs_keys) -> None:
        """Append one whole episode to a single-env buffer (demonstrations)."""
        if self.num_envs != 1:
            raise ValueError("add_episode needs a single-stream buffer")
        truncated = steps["truncated"].clone()
        if not bool(steps["terminated"][-1] or truncated[-1]):
            truncated[-1] = True  # a recording cut short: its end is a time limit, bootstrap
        row = self._all[:1]
        for t in range(len(steps["action"])):
            self._write(
                row,
                {k: steps[k][t : t + 1] for k in obs_keys},
                steps["action"][t : t + 1],
                steps["reward"][t : t + 1],
                steps["terminated"][t : t + 1],
                truncated[t : t + 1],
            )
        self._write(row, {k: v[None] for k, v in final_obs.items()})

    # -- sampling -----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Slots held, summed over envs."""
        return int(torch.clamp(self.total, max=self.capacity).sum())

    def valid_starts(self) -> torch.Tensor:
        """(N, C) bool: slots that start a transition whose next slot is written."""
        return self.has_action & self.written & torch.roll(self.written, -1, dims=1)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict:
        """A batch drawn evenly across envs: ceil(batch_size / N) per env, cut to batch_size."""
        valid = self.valid_starts()
        counts = valid.sum(1, keepdim=True)  # (N, 1)
        if int(counts.min()) == 0:
            raise RuntimeError("replay has an env with no complete transition yet")
        per_env = -(-batch_size // self.num_envs)
        # Uniform over each env's valid slots: rank u in [0, count) -> the u-th valid slot.
        u = torch.rand((self.num_envs, per_env), device=self.device, generator=generator)
        rank = (u * counts).long() + 1
        slot = torch.searchsorted(valid.long().cumsum(1), rank)  # (N, per_env)
        env = torch.arange(self.num_envs, device=self.device)[:, None].expand_as(slot)
        return self._gather(env.reshape(-1)[:batch_size], slot.reshape(-1)[:batch_size])

    def _gather(self, env: torch.Tensor, slot: torch.Tensor) -> dict:
        c = self.capacity
        reward = torch.zeros(len(env), device=self.device)
        discount = torch.ones(len(env), device=self.device)
        alive = torch.ones(len(env), dtype=torch.bool, device=self.device)
        n_eff = torch.zeros(len(env), dtype=torch.long, device=self.device)
        for k in range(self.n_step):
            s = (slot + k) % c
            # the next slot being written also means s is not the newest (never past the pointer)
            usable = alive & self.has_action[env, s] & self.written[env, (s + 1) % c]
            reward += torch.where(usable, discount * self.reward[env, s], 0.0)
            discount = torch.where(usable, discount * self.gamma, discount)
            n_eff += usable.long()
            ended = self.terminated[env, s] | self.truncated[env, s]
            terminated = usable & self.terminated[env, s]
            discount = torch.where(terminated, 0.0, discount)
            alive = usable & ~ended
        nxt = (slot + n_eff) % c
        return {
            "obs": {k: v[env, slot] for k, v in self.obs.items()},
            "action": self.action[env, slot],
            "reward": reward,
            "discount": discount,
            "next_obs": {k: v[env, nxt] for k, v in self.obs.items()},
            "n_eff": n_eff,
            "env": env,
        }

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The written part of the storage: slots past the most any env has written are left
        out, so a file grows with the data rather than with the capacity."""
        used = int(self.total.max().clamp(max=self.capacity))
        tensors = {f"obs.{k}": v[:, :used] for k, v in self.obs.items()}
        for name in SLOT_FIELDS:
            tensors[name] = getattr(self, name)[:, :used]
        tensors.update(ptr=self.ptr, total=self.total)
        return {k: v.contiguous().cpu() for k, v in tensors.items()}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        meta = {"gamma": self.gamma, "n_step": self.n_step, "capacity": self.capacity}
        meta = {k: str(v) for k, v in meta.items()}
        save_file(self.state_dict(), str(tmp), metadata=meta)
        tmp.replace(path)  # atomic: a crash leaves the previous file

    def load(self, path: str | Path) -> None:
        """Restore a saved buffer, its streams cut (``cut_streams``): a run that writes on
        starts new episodes. A buffer that never wrapped loads into any capacity that holds it
        (a resumed run may be longer); one that wrapped needs its own capacity."""
        try:
            with safe_open(str(path), framework="pt", device=str(self.device)) as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
        except Exception as exc:  # safetensors' own error type, or OSError
            raise ValueError(
                f"{path} is damaged ({type(exc).__name__}: {exc}); move it away to resume "
                "without the replay"
            ) from exc
        saved_envs, used = tensors["written"].shape
        saved_capacity = int(meta.get("capacity", used))  # files before "capacity": all slots
        total = tensors["total"]
        wrapped = bool((total >= saved_capacity).any())
        fits = saved_capacity == self.capacity or (not wrapped and int(total.max()) < self.capacity)
        if saved_envs != self.num_envs or not fits:
            raise ValueError(
                f"{path} holds {saved_envs} env streams of {saved_capacity} slots"
                f"{', wrapped' if wrapped else f', {int(total.max())} written'}; this buffer has "
                f"{self.num_envs} of {self.capacity}: resume with the num_envs and "
                "replay_capacity it was saved with"
            )
        for k in self.obs:
            self.obs[k][:, :used] = tensors[f"obs.{k}"]
        for name in SLOT_FIELDS:
            field = getattr(self, name)
            field[:, :used] = tensors[name]
            field[:, used:] = 0  # no slot of a previous fill stays marked as written
        self.ptr.copy_(tensors["ptr"])
        self.total.copy_(tensors["total"])
        self.cut_streams()

    def cut_streams(self) -> None:
        """End every stream where it stands: each one's newest transition, still waiting for
        its next observation, is dropped, so the next slot written starts a new episode and no
        transition or n-step sum runs from the old episode into it."""
        self.has_action[self._all, (self.ptr - 1) % self.capacity] = False


SLOT_FIELDS = ("action", "reward", "terminated", "truncated", "has_action", "written")
"""Per-slot storage besides the observations, (N, C, ...) each."""


def slot_bytes(obs_shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], action_dim: int) -> int:
    """Bytes one slot takes: its observations, action (float32), reward and four flags."""
    obs = sum(math.prod(shape) * dtype.itemsize for shape, dtype in obs_shapes.values())
    return obs + 4 * action_dim + 4 + 4


def check_fits(nbytes: int, device: torch.device) -> None:
    """Refuse storage the device cannot hold, before allocating it: on the CPU an oversized
    allocation is killed by the kernel without a word, and on either it would end a long run."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    elif device.type == "cpu" and Path("/proc/meminfo").exists():
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        free = int(info["MemAvailable"].split()[0]) * 1024
    else:
        return
    if nbytes > 0.9 * free:
        raise ValueError(
            f"replay storage needs {nbytes / 2**30:.1f} GiB but {device} has "
            f"{free / 2**30:.1f} GiB free: lower replay_capacity (slots summed over envs; "
            "pixel observations take ~100 KB a slot)"
        )


LOSS_INPUTS = ("obs", "action", "reward", "discount", "next_obs")
"""The batch entries every learner's loss function takes, in this order."""


def loss_inputs(batch: dict) -> tuple:
    return tuple(batch[k] for k in LOSS_INPUTS)


def mixed_batch(online: dict, demo: dict) -> dict:
    """Concatenate two batches along the batch axis (demo rows last)."""
    out = {}
    for key in online:
        if isinstance(online[key], dict):
            out[key] = {k: torch.cat([online[key][k], demo[key][k]]) for k in online[key]}
        else:
            out[key] = torch.cat([online[key], demo[key]])
    return out
