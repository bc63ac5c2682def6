"""Load demonstrations written by ``robot-rl collect`` into a single-stream replay buffer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from robot_rl.data.episode_store import EpisodeStore
from robot_rl.rl.replay import ReplayBuffer

# Task settings newer than some stores: a store that does not record one was recorded at this.
SETTINGS_ADDED_LATER = {"success_bonus_discount": 0.0}


def load_demos(
    paths: list[str],
    obs_shapes: dict,
    action_dim: int,
    gamma: float,
    n_step: int,
    device: torch.device,
    expect: dict | None = None,
    relabel: Callable[[dict, dict], tuple[dict, dict]] | None = None,
    store_shapes: dict | None = None,
) -> ReplayBuffer:
    """Every episode of every store; refuses stores whose observations or actions differ from
    the env's, or whose recorded task settings differ from ``expect`` (e.g. the reward type, since
    demo rewards are used as recorded), naming the mismatch. A store must hold the observations
    ``store_shapes`` (default ``obs_shapes``, both key -> (shape, dtype)); ``relabel(steps,
    final)`` turns each episode (as tensors) into ``obs_shapes`` before it is stored."""
    stores = [EpisodeStore(p) for p in paths]
    capacity = sum(s.num_steps + s.num_episodes for s in stores) + 1
    buffer = ReplayBuffer(obs_shapes, action_dim, 1, capacity, gamma, n_step, device)
    want = {k: list(shape) for k, (shape, _) in (store_shapes or obs_shapes).items()}
    for store in stores:
        recorded = {
            **SETTINGS_ADDED_LATER,
            "task": store.attrs.get("task"),
            **store.attrs.get("config", {}),
        }
        for key, value in (expect or {}).items():
            if recorded.get(key) != value:
                raise ValueError(
                    f"demo store {store.path} was recorded with {key}="
                    f"{recorded.get(key)!r}, but training uses {key}={value!r}"
                )
        have = {k: store.final_schema[k]["shape"] for k in store.final_schema}
        if have != want:
            raise ValueError(
                f"demo store {store.path} has observations {have}, but the env "
                f"gives {want} (task {store.attrs.get('task')!r}, obs mode "
                f"{store.attrs.get('obs_mode')!r})"
            )
        if store.schema["action"]["shape"] != [action_dim]:
            raise ValueError(
                f"demo store {store.path} has {store.schema['action']['shape']} "
                f"actions, the env takes [{action_dim}]"
            )
        for i in range(store.num_episodes):
            steps, final = store.episode(i)
            tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in steps.items()}
            final = {k: torch.from_numpy(np.asarray(v)) for k, v in final.items()}
            if relabel is not None:
                tensors, final = relabel(tensors, final)
            buffer.add_episode(tensors, final, list(obs_shapes))
    if buffer.size == 0:
        raise ValueError(f"no episodes in {paths}")
    return buffer
