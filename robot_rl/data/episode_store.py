"""Episodes in a zarr (v3) store, in diffusion_policy's ReplayBuffer layout.

    data/<key>         (T_total, ...) time-first; every step's observation, action, reward, flags
    meta/episode_ends  (E,) int64, exclusive end index of each episode in data/
    final/<key>        (E, ...) observation after each episode's last action (for RL bootstrap)
    attrs              format, task, obs_mode, config, schema

Writes are append-only per finished episode: data first, then final/, and episode_ends last, one
chunk per entry. A store interrupted at any point (Ctrl-C, kill) therefore still reads back every
episode whose end was recorded; rows past the last recorded end are ignored and overwritten by the
next append. Ctrl-C during an episode's write is deferred until that episode is complete.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

FORMAT = "robot_rl.episodes/1"
STEP_KEYS = ("action", "reward", "terminated", "truncated")


class StoreError(ValueError):
    """The store is missing, corrupt, or does not match what is being written."""


def schema_of(arrays: Mapping[str, np.ndarray], time_axis: bool = True) -> dict[str, dict]:
    """{key: {"shape": per-step shape, "dtype": name}} of arrays with a leading time axis."""
    return {
        k: {
            "shape": list(np.asarray(v).shape[1 if time_axis else 0 :]),
            "dtype": np.asarray(v).dtype.str,
        }
        for k, v in sorted(arrays.items())
    }


def _chunks(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    if len(shape) == 3 and dtype == np.uint8:  # an image: one frame per chunk
        return (1, *shape)
    return (max(1, 2**16 // max(1, int(np.prod(shape)))), *shape)


@contextlib.contextmanager
def _defer_sigint():
    """Hold Ctrl-C until the block finishes, then hand it to the handler that was in place
    (KeyboardInterrupt by default; nothing where SIGINT is ignored, as in a background job).
    Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            signal.raise_signal(signal.SIGINT)


class EpisodeStore:
    """Read and append episodes. ``EpisodeStore(path)`` opens an existing store for reading;
    ``EpisodeStore.create_or_append(...)`` opens one for writing."""

    def __init__(self, path: str | Path, mode: str = "r"):
        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            raise StoreError(f"{self.path} is not a zarr store (no zarr.json)")
        try:
            self.root = zarr.open_group(str(self.path), mode=mode)
            self.attrs = dict(self.root.attrs)
        except Exception as exc:  # zarr raises several types for unreadable metadata
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        if self.attrs.get("format") != FORMAT:
            raise StoreError(
                f"{self.path} is not a robot_rl episode store "
                f"(format {self.attrs.get('format')!r}, want {FORMAT!r})"
            )
        self.schema: dict[str, dict] = self.attrs["schema"]
        self.final_schema: dict[str, dict] = self.attrs["final_schema"]
        self.episode_ends = self._valid_episode_ends()

    # -- writing -------------------------------------------------------------------------------
    @classmethod
    def create_or_append(
        cls, path: str | Path, schema: dict, final_schema: dict, attrs: dict[str, Any]
    ) -> EpisodeStore:
        """Open ``path`` for appending, creating it if needed. Refuses a store whose schema or
        task differs, with the differences in the message."""
        path = Path(path)
        if (path / "zarr.json").exists():
            store = cls(path, mode="r+")
            for name, have, want in (
                ("step", store.schema, schema),
                ("final", store.final_schema, final_schema),
            ):
                if have != want:
                    diff = {
                        k: (have.get(k), want.get(k))
                        for k in set(have) | set(want)
                        if have.get(k) != want.get(k)
                    }
                    raise StoreError(
                        f"cannot append to {path}: its {name} schema differs "
                        f"(key: (in store, new)) {diff}"
                    )
            for key in ("task", "obs_mode"):
                if store.attrs.get(key) != attrs.get(key):
                    raise StoreError(
                        f"cannot append to {path}: store has {key}="
                        f"{store.attrs.get(key)!r}, new data has {attrs.get(key)!r}"
                    )
            return store
        root = zarr.open_group(str(path), mode="w")
        compressor = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
        for group, spec in (("data", schema), ("final", final_schema)):
            g = root.require_group(group)
            for key, s in spec.items():
                shape, dtype = tuple(s["shape"]), np.dtype(s["dtype"])
                g.create_array(
                    key,
                    shape=(0, *shape),
                    chunks=_chunks(shape, dtype),
                    dtype=dtype,
                    compressors=[compressor],
                )
        root.require_group("meta").create_array(
            "episode_ends", shape=(0,), chunks=(1,), dtype=np.int64, fill_value=0
        )
        root.attrs.update(
            {**attrs, "format": FORMAT, "schema": schema, "final_schema": final_schema}
        )
        return cls(path, mode="r+")

    def add_episode(self, steps: Mapping[str, np.ndarray], final_obs: Mapping[str, np.ndarray]):
        """Append one finished episode: ``steps`` (T, ...) per data key and ``final_obs`` per
        observation key."""
        if schema_of(steps) != self.schema:
            raise StoreError(
                f"episode keys/shapes {schema_of(steps)} do not match the store's {self.schema}"
            )
        if schema_of(final_obs, time_axis=False) != self.final_schema:
            raise StoreError("final observation does not match the store's final schema")
        lengths = {len(v) for v in steps.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise StoreError(f"episode arrays must share one non-zero length, got {lengths}")
        length = lengths.pop()
        start = int(self.episode_ends[-1]) if len(self.episode_ends) else 0
        count = len(self.episode_ends)
        with _defer_sigint():
            for key, value in steps.items():
                arr = self.root["data"][key]
                arr.resize((start + length, *arr.shape[1:]))
                arr[start : start + length] = value
            for key, value in final_obs.items():
                arr = self.root["final"][key]
                arr.resize((count + 1, *arr.shape[1:]))
                arr[count] = value
            ends = self.root["meta"]["episode_ends"]
            ends.resize((count + 1,))
            ends[count] = start + length
        self.episode_ends = np.append(self.episode_ends, start + length)

    # -- reading -------------------------------------------------------------------------------
    def _valid_episode_ends(self) -> np.ndarray:
        """The longest prefix of recorded ends that is consistent with the data arrays."""
        arr = self.root["meta"]["episode_ends"]
        ends: list[int] = []
        limit = min([self.root["data"][k].shape[0] for k in self.schema] or [0])
        finals = min([self.root["final"][k].shape[0] for k in self.final_schema] or [0])
        for i in range(arr.shape[0]):
            try:
                end = int(arr[i])
            except Exception:  # a chunk cut short by a kill: stop at the last good episode
                break
            if end <= (ends[-1] if ends else 0) or end > limit or i >= finals:
                break
            ends.append(end)
        return np.asarray(ends, dtype=np.int64)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_steps(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    def episode_slice(self, index: int) -> slice:
        start = int(self.episode_ends[index - 1]) if index > 0 else 0
        return slice(start, int(self.episode_ends[index]))

    def episode(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(steps, final_obs) of episode ``index``."""
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} of {self.num_episodes}")
        sl = self.episode_slice(index)
        steps = {k: self.root["data"][k][sl] for k in self.schema}
        final = {k: self.root["final"][k][index] for k in self.final_schema}
        return steps, final

    def array(self, key: str) -> np.ndarray:
        """All recorded steps of ``key``, (T_total, ...)."""
        return self.root["data"][key][: self.num_steps]
