"""Observation-history / action-chunk windows over a ``robot-rl collect`` store, for BC.

A sample at step t of an episode holds observations t-To+1 .. t and actions t .. t+Ta-1.
Windows never cross episodes: indices before the start repeat the first observation and indices
past the end repeat the last action (the diffusion_policy convention).

Shapes: obs[k] (B, To, ...) with images uint8 (B, To, H, W, 3); action (B, Ta, A).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robot_rl.data.episode_store import EpisodeStore


class ChunkDataset:
    def __init__(
        self,
        paths: list[str | Path],
        obs_horizon: int,
        action_horizon: int,
        device: str | torch.device = "cpu",
    ):
        if obs_horizon < 1 or action_horizon < 1:
            raise ValueError("obs_horizon and action_horizon must be >= 1")
        stores = [EpisodeStore(p) for p in paths]
        if not stores or sum(s.num_episodes for s in stores) == 0:
            raise ValueError(f"no episodes in {[str(p) for p in paths]}")
        keys = [k for k in stores[0].final_schema]
        for store in stores[1:]:
            if store.schema != stores[0].schema:
                raise ValueError(f"{store.path} has a different schema from {stores[0].path}")
        self.attrs = dict(stores[0].attrs)
        self.device = torch.device(device)
        obs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        actions, obs_index, act_index = [], [], []
        offset = 0
        for store in stores:
            data = {k: store.array(k) for k in (*keys, "action")}
            for i in range(store.num_episodes):
                sl = store.episode_slice(i)
                length = sl.stop - sl.start
                for k in keys:
                    obs[k].append(np.asarray(data[k][sl]))
                actions.append(np.asarray(data["action"][sl], dtype=np.float32))
                t = np.arange(length)[:, None]
                obs_index.append(offset + np.clip(t + np.arange(1 - obs_horizon, 1), 0, None))
                act_index.append(offset + np.clip(t + np.arange(action_horizon), None, length - 1))
                offset += length
        self.obs = {k: torch.from_numpy(np.concatenate(v)).to(self.device) for k, v in obs.items()}
        self.actions = torch.from_numpy(np.concatenate(actions)).to(self.device)
        self.obs_index = torch.from_numpy(np.concatenate(obs_index)).to(self.device)
        self.act_index = torch.from_numpy(np.concatenate(act_index)).to(self.device)
        self.num_episodes = sum(s.num_episodes for s in stores)

    def __len__(self) -> int:
        return len(self.obs_index)

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape[1:]) for k, v in self.obs.items()}

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def get(self, index: torch.Tensor) -> dict:
        """Windows for dataset indices (B,)."""
        oi, ai = self.obs_index[index], self.act_index[index]
        return {"obs": {k: v[oi] for k, v in self.obs.items()}, "action": self.actions[ai]}

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict:
        index = torch.randint(len(self), (batch_size,), device=self.device, generator=generator)
        return self.get(index)
