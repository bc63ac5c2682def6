"""Episodes in a zarr (v3) store, in diffusion_policy's ReplayBuffer layout.

    data/<key>         (T_total, ...) time-first; every step's observation, action, reward, flags
    meta/episode_ends  (E,) int64, exclusive end index of each episode in data/
    final/<key>        (E, ...) observation after each episode's last action (for RL bootstrap)
    attrs              format, task, obs_mode, config, schema

Writes are append-only per finished episode: data first, then final/, and episode_ends last, one
chunk per entry. A store interrupted at any point (Ctrl-C, kill) therefore still reads back every
episode whose end was recorded; rows past the last recorded end are ignored and overwritten by the
next append. Ctrl-C during an episode's write is deferred until that episode is complete.

Damage is refused, not read around: every chunk is written, even one that holds only the fill
value (stores that say ``every_chunk_written``), so a chunk missing under the recorded episodes
is an error rather than zeros; so is an unreadable chunk, or an episode end other than the last
that cannot be read (only the last can be cut short by a kill).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from robot_rl.interrupts import defer_sigint

FORMAT = "robot_rl.episodes/1"
STEP_KEYS = ("action", "reward", "terminated", "truncated")
EVERY_CHUNK = "every_chunk_written"
"""Store attribute: chunks equal to the fill value are written too (zarr skips them by
default), so a chunk missing from the files is damage."""


def _writing():
    """zarr's setting for every write to a store: write all chunks (see ``EVERY_CHUNK``)."""
    return zarr.config.set({"array.write_empty_chunks": True})


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
        for group, keys in (("data", self.schema), ("final", self.final_schema)):
            missing = [k for k in keys if k not in self.root[group]]
            if missing:
                raise StoreError(f"{self.path} is corrupt: arrays {group}/{missing} are missing")
        self.episode_ends = self._valid_episode_ends()
        if self.attrs.get(EVERY_CHUNK):
            self._check_chunks()

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
            for key in ("task", "obs_mode"):
                if store.attrs.get(key) != attrs.get(key):
                    raise StoreError(
                        f"cannot append to {path}: store has {key}="
                        f"{store.attrs.get(key)!r}, new data has {attrs.get(key)!r}"
                    )
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
            return store
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            # zarr's "w" would delete what is there
            raise StoreError(f"{path} exists and is not an episode store: choose another path")
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
            {
                **attrs,
                "format": FORMAT,
                "schema": schema,
                "final_schema": final_schema,
                EVERY_CHUNK: True,
            }
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
        with defer_sigint(), _writing():
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
        """The recorded ends consistent with the data arrays: all of them, or all but the last
        where a kill cut its append short."""
        arr = self.root["meta"]["episode_ends"]
        ends: list[int] = []
        limit = min([self.root["data"][k].shape[0] for k in self.schema] or [0])
        finals = min([self.root["final"][k].shape[0] for k in self.final_schema] or [0])
        for i in range(arr.shape[0]):
            try:
                end = int(arr[i])
            except Exception:
                end = None
            if end is None or end <= (ends[-1] if ends else 0) or end > limit or i >= finals:
                if i == arr.shape[0] - 1:
                    break  # the last append, cut short: the store ends at the episode before
                raise StoreError(
                    f"{self.path} is corrupt: episode end {i} of {arr.shape[0]} is unreadable or "
                    f"inconsistent ({end}); episodes 0..{i - 1} read fine"
                )
            ends.append(end)
        return np.asarray(ends, dtype=np.int64)

    def _check_chunks(self) -> None:
        """Refuse a store with a chunk missing under its recorded episodes (it would read as
        zeros)."""
        rows = {"data": self.num_steps, "final": self.num_episodes}
        for group, keys in (("data", self.schema), ("final", self.final_schema)):
            for key in keys:
                arr = self.root[group][key]
                chunk_dir = self.path / group / key / "c"
                inner = ["0"] * (arr.ndim - 1)  # one chunk spans every axis but time
                count = -(-rows[group] // arr.chunks[0])
                missing = [
                    i for i in range(count) if not chunk_dir.joinpath(str(i), *inner).exists()
                ]
                if missing:
                    raise StoreError(
                        f"{self.path} is corrupt: {group}/{key} has {len(missing)} of its "
                        f"{count} chunks missing (first: {missing[0]}), which would read as zeros"
                    )

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
        with self._reading(f"episode {index}"):
            steps = {k: self.root["data"][k][sl] for k in self.schema}
            final = {k: self.root["final"][k][index] for k in self.final_schema}
        return steps, final

    def array(self, key: str) -> np.ndarray:
        """All recorded steps of ``key``, (T_total, ...)."""
        with self._reading(f"data/{key}"):
            return self.root["data"][key][: self.num_steps]

    @contextlib.contextmanager
    def _reading(self, what: str):
        try:
            yield
        except Exception as exc:  # a damaged chunk: zarr and its codecs raise several types
            raise StoreError(f"{self.path} is corrupt: cannot read {what}: {exc}") from exc
