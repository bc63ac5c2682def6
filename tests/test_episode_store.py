"""The zarr episode store: round trip, schema checks, and survival of interruptions."""

import json
import shutil
import signal

import numpy as np
import pytest
import zarr

from robot_rl.data.episode_store import EpisodeStore, StoreError, schema_of


def episode(rng, length, image=True):
    steps = {
        "state": rng.normal(size=(length, 5)).astype(np.float32),
        "action": rng.uniform(-1, 1, (length, 7)).astype(np.float32),
        "reward": rng.normal(size=length).astype(np.float32),
        "terminated": np.eye(1, length, length - 1, dtype=bool)[0],
        "truncated": np.zeros(length, bool),
    }
    final = {"state": rng.normal(size=5).astype(np.float32)}
    if image:
        steps["front"] = rng.integers(0, 255, (length, 16, 16, 3), dtype=np.uint8)
        final["front"] = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    return steps, final


ATTRS = {"task": "pick_cube", "obs_mode": "state+pixels", "config": {"a": 1}}


def open_store(path, steps, final, attrs=ATTRS):
    return EpisodeStore.create_or_append(path, schema_of(steps), schema_of(final, False), attrs)


def test_round_trip_is_identical_and_in_diffusion_policy_layout(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [episode(rng, n) for n in (5, 1, 9)]
    store = open_store(tmp_path / "d.zarr", *episodes[0])
    for steps, final in episodes:
        store.add_episode(steps, final)
    again = EpisodeStore(tmp_path / "d.zarr")
    np.testing.assert_array_equal(again.episode_ends, [5, 6, 15])
    for i, (steps, final) in enumerate(episodes):
        got_steps, got_final = again.episode(i)
        for k in steps:
            np.testing.assert_array_equal(got_steps[k], steps[k])
            assert got_steps[k].dtype == steps[k].dtype
        for k in final:
            np.testing.assert_array_equal(got_final[k], final[k])
    assert again.attrs["task"] == "pick_cube" and again.attrs["config"] == {"a": 1}
    # diffusion_policy layout: data/<key> time-first, meta/episode_ends; images chunked per frame.
    assert again.root["data"]["front"].chunks == (1, 16, 16, 3)
    assert again.root["meta"]["episode_ends"][:].tolist() == [5, 6, 15]
    meta = json.loads((tmp_path / "d.zarr" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3


def test_append_with_a_different_schema_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    steps, final = episode(rng, 4)
    open_store(tmp_path / "d.zarr", steps, final).add_episode(steps, final)
    steps2, final2 = episode(rng, 4, image=False)
    with pytest.raises(StoreError, match="schema differs"):
        open_store(tmp_path / "d.zarr", steps2, final2)
    with pytest.raises(StoreError, match="task"):
        open_store(tmp_path / "d.zarr", steps, final, {**ATTRS, "task": "reach"})
    assert EpisodeStore(tmp_path / "d.zarr").num_episodes == 1  # nothing was lost


def test_store_cut_short_mid_episode_keeps_completed_episodes(tmp_path):
    """Simulate a kill after data rows were written but before the episode end was recorded."""
    rng = np.random.default_rng(2)
    steps, final = episode(rng, 6)
    store = open_store(tmp_path / "d.zarr", steps, final)
    store.add_episode(steps, final)
    partial, _ = episode(rng, 3)
    with zarr.config.set({"array.write_empty_chunks": True}):  # as add_episode writes
        for key, value in partial.items():  # half-written episode: data grew, ends did not
            arr = store.root["data"][key]
            arr.resize((9, *arr.shape[1:]))
            arr[6:9] = value
    ends = store.root["meta"]["episode_ends"]
    ends.resize((2,))  # the new end entry exists but was never written (reads as 0)
    reopened = EpisodeStore(tmp_path / "d.zarr", mode="r+")
    assert reopened.num_episodes == 1 and reopened.num_steps == 6
    np.testing.assert_array_equal(reopened.episode(0)[0]["state"], steps["state"])
    # Appending continues from the last complete episode and overwrites the partial rows.
    more, more_final = episode(rng, 2)
    reopened.add_episode(more, more_final)
    final_store = EpisodeStore(tmp_path / "d.zarr")
    np.testing.assert_array_equal(final_store.episode_ends, [6, 8])
    np.testing.assert_array_equal(final_store.episode(1)[0]["action"], more["action"])


@pytest.mark.parametrize("handler", [signal.default_int_handler, signal.SIG_IGN])
def test_ctrl_c_during_a_write_lands_after_the_episode(tmp_path, monkeypatch, handler):
    """SIGINT mid-write: the episode is finished first, then the signal goes to the handler in
    place (KeyboardInterrupt by default; nothing where it is ignored, as in a background job)."""
    rng = np.random.default_rng(4)
    steps, final = episode(rng, 6)
    store = open_store(tmp_path / "d.zarr", steps, final)
    resize = zarr.Array.resize

    def resize_then_interrupt(self, *args, **kwargs):  # the signal lands inside the write
        signal.raise_signal(signal.SIGINT)
        return resize(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Array, "resize", resize_then_interrupt)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        if handler is signal.SIG_IGN:
            store.add_episode(steps, final)
        else:
            with pytest.raises(KeyboardInterrupt):
                store.add_episode(steps, final)
        assert signal.getsignal(signal.SIGINT) is handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    reopened = EpisodeStore(tmp_path / "d.zarr")
    assert reopened.num_episodes == 1
    np.testing.assert_array_equal(reopened.episode(0)[0]["front"], steps["front"])


@pytest.mark.parametrize("entry", [2, 1])
def test_only_the_last_episode_end_may_be_cut_short(tmp_path, entry):
    """A kill can cut short only the last append's end: the store then ends an episode
    earlier. An unreadable end before it is damage, not a shorter store."""
    rng = np.random.default_rng(3)
    steps, final = episode(rng, 3, image=False)
    store = open_store(tmp_path / "d.zarr", steps, final)
    for _ in range(3):
        store.add_episode(*episode(rng, 3, image=False))
    chunk = tmp_path / "d.zarr" / "meta" / "episode_ends" / "c" / str(entry)
    chunk.write_bytes(chunk.read_bytes()[:3])  # a write cut short
    if entry == 2:
        assert EpisodeStore(tmp_path / "d.zarr").num_episodes == 2
    else:
        with pytest.raises(StoreError, match="corrupt: episode end 1 of 3 .* episodes 0..0 read"):
            EpisodeStore(tmp_path / "d.zarr")


def damaged_store(tmp_path):
    """Two episodes whose reward and flags are all zero: chunks of nothing but the fill value,
    which zarr would not write by default."""
    rng = np.random.default_rng(5)
    store = None
    for _ in range(2):
        steps, final = episode(rng, 4)
        for key in ("reward", "terminated", "truncated"):
            steps[key] = np.zeros_like(steps[key])
        store = store or open_store(tmp_path / "d.zarr", steps, final)
        store.add_episode(steps, final)
    assert EpisodeStore(tmp_path / "d.zarr").num_episodes == 2  # intact: it opens
    return tmp_path / "d.zarr"


@pytest.mark.parametrize("chunk", ["data/reward/c/0", "data/front/c/5/0/0/0", "final/state/c/0/0"])
def test_a_missing_chunk_is_refused_not_read_as_zeros(tmp_path, chunk):
    path = damaged_store(tmp_path)
    (path / chunk).unlink()
    group, key = chunk.split("/")[:2]
    with pytest.raises(StoreError, match=f"corrupt: {group}/{key} has 1 of its .* chunks missing"):
        EpisodeStore(path)


def test_an_unreadable_chunk_or_a_missing_array_is_a_clear_error(tmp_path):
    path = damaged_store(tmp_path)
    chunk = path / "data" / "front" / "c" / "6" / "0" / "0" / "0"
    chunk.write_bytes(b"garbage" + chunk.read_bytes()[7:])
    store = EpisodeStore(path)
    store.episode(0)  # the other episode still reads
    with pytest.raises(StoreError, match="corrupt: cannot read episode 1"):
        store.episode(1)
    shutil.rmtree(path / "data" / "action")
    with pytest.raises(StoreError, match=r"arrays data/\['action'\] are missing"):
        EpisodeStore(path)


def test_writing_a_store_over_other_files_is_refused_and_leaves_them(tmp_path):
    steps, final = episode(np.random.default_rng(6), 3)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "a_file").write_text("mine too")
    for path in (tmp_path / "notes", tmp_path / "a_file"):
        with pytest.raises(StoreError, match="exists and is not an episode store"):
            open_store(path, steps, final)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert (tmp_path / "a_file").read_text() == "mine too"


def test_not_a_store_gives_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not a zarr store"):
        EpisodeStore(tmp_path)
    (tmp_path / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot open"):
        EpisodeStore(tmp_path)


def test_mismatched_episode_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    steps, final = episode(rng, 4)
    store = open_store(tmp_path / "d.zarr", steps, final)
    steps["action"] = steps["action"][:, :6]
    with pytest.raises(StoreError, match="do not match"):
        store.add_episode(steps, final)
    assert EpisodeStore(tmp_path / "d.zarr").num_episodes == 0
