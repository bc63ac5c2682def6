"""Checkpointing a pixel replay: seconds and bytes per save as the buffer fills.

    .venv/bin/python bench/replay_save.py [--capacity 20000] [--frames 2000 10000 20000]
    python bench/replay_save.py --device cuda --capacity 20000   # a GPU (frames copied back)

PickCube from pixels: two 128x128x3 uint8 cameras and 7-D proprioception per slot. The trainer
saves the replay with every checkpoint (each evaluation). A save writes the slots written so
far; a buffer written to its capacity is also what a save of all slots writes at any fill,
so the last row is the cost every save paid before saves were cut to the written slots.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from robot_rl.rl.replay import ReplayBuffer

SHAPES = {
    "front": ((128, 128, 3), torch.uint8),
    "wrist": ((128, 128, 3), torch.uint8),
    "proprio": ((7,), torch.float32),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=20000)
    parser.add_argument("--frames", type=int, nargs="+", default=[2000, 10000, 20000])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    buf = ReplayBuffer(SHAPES, 7, 1, args.capacity, device=args.device)
    for v in buf.obs.values():
        v.random_(0, 255)
    print(f"| frames written (capacity {args.capacity}) | file GB | save s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "replay.safetensors"
        for frames in args.frames:
            n = min(frames, args.capacity)
            buf.written[:, :n] = True
            buf.has_action[:, : n - 1] = True
            buf.total.fill_(frames)
            buf.ptr.fill_(frames % args.capacity)
            start = time.perf_counter()
            buf.save(path)
            seconds = time.perf_counter() - start
            print(f"| {frames} | {path.stat().st_size / 1e9:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
