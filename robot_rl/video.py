"""Write rollouts to H.264 MP4 files that any player and browser can show."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from robot_rl.batched_env import BatchedEnv


def check_video_path(path: str | Path) -> Path:
    """Refuse, before any rollout, a video path that cannot be written as an MP4."""
    path = Path(path)
    if path.suffix.lower() != ".mp4" or path.is_dir():
        raise ValueError(f"video={path}: give the path of an .mp4 file to write")
    return path


def write_video(path: str | Path, frames: list[np.ndarray] | np.ndarray, fps: float) -> Path:
    """Frames (T, H, W, 3) uint8 to ``path`` (H.264, yuv420p)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    with imageio.get_writer(
        path,
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        macro_block_size=16,
        ffmpeg_log_level="error",
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


class FrameRecorder(BatchedEnv):
    """Pass-through batched env over one of our MuJoCo tasks that renders world 0 (front and
    wrist cameras side by side) after every reset and step. Goes under any fine-tuning wrapper,
    so chunked and residual policies are filmed at the control rate."""

    def __init__(self, env: BatchedEnv, size: int = 256):
        if getattr(env, "runtime", None) is None:
            raise ValueError("videos are available for our MuJoCo tasks only")
        self.env, self.size, self.frames = env, size, []
        self.num_envs, self.device = env.num_envs, env.device
        self.runtime = env.runtime
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space

    def _frame(self) -> None:
        images = self.runtime.render(("front", "wrist"), self.size)
        self.frames.append(np.concatenate([images["front"][0], images["wrist"][0]], axis=1))

    def reset(self, seed: int | None = None):
        out = self.env.reset(seed)
        self._frame()
        return out

    def reset_envs(self, mask):
        out = self.env.reset_envs(mask)
        self._frame()
        return out

    def step(self, action, autoreset: bool = True):
        out = self.env.step(action, autoreset)
        self._frame()
        return out

    def close(self) -> None:
        self.env.close()

    def write(self, path: str | Path) -> Path:
        return write_video(path, self.frames, fps=self.runtime.cfg.control_hz)
