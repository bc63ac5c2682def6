"""Why a policy fails: the episodes of a deterministic evaluation sorted into failure modes.

    .venv/bin/python bench/failure_modes.py RUN_DIR [RUN_DIR ...] [--base-only] [--episodes 50]

Each RUN_DIR (or checkpoint directory) is evaluated as ``robot-rl eval`` does: same seed, same
episode quota per env, so the success count matches its 50-episode ``robot-rl eval``. The
episodes are traced through the sim's ``diag/*`` info (``ArmTask.diagnostics``) under whatever
wrapper the learner acts through (residual, DSRL chunks). ``--base-only`` adds, for residual
runs, a row with the base policy alone through the same wrapper.

PickCube modes, in order (an episode takes the first that fits):
- lifted without a grasp by the criterion: the cube's bottom rose to ``lift_height`` but the
  tool point was never within 2 cm of its centre while squeezing (a pinch at the cube's edge);
- closed far above: the gripper first squeezed below the cube's width more than 5 cm from it;
- missed: squeezed within 5 cm but never grasped;
- grasped, not lifted;
- never closed.

PegInsert modes: in the hole but short of the depth (the tip went more than 2 mm below the
rim); at the hole but not entering (the tip came within 5 mm of the centre); never within 5 mm.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch

from robot_rl.batched_env import BatchedEnv
from robot_rl.rl.envs import make_env
from robot_rl.rl.trainer import SavedRun, episode_quota, evaluate
from robot_rl.sim.tasks.pick_cube import CUBE_HALF, PickCubeConfig

FAR_CLOSE = 0.05
"""PickCube: a first squeeze farther than this from the cube's centre is 'closed far above', m."""
NEAR_HOLE = 0.005
"""PegInsert: the tip within this of the hole's centre is 'at the hole', m."""
ENTERED = 0.002
"""PegInsert: the tip this far below the rim is 'in the hole', m."""


class EpisodeTraces(BatchedEnv):
    """Passes every call to ``env`` and keeps, per env, each finished episode's per-step
    ``diag/*``, ``reward/grasp`` and ``success`` values, in the order the episodes ended."""

    def __init__(self, env: BatchedEnv):
        self.env = env
        self.num_envs, self.device = env.num_envs, env.device
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.runtime = getattr(env, "runtime", None)
        self._clear()

    def _clear(self) -> None:
        self.finished: list[list[dict[str, np.ndarray]]] = [[] for _ in range(self.num_envs)]
        self._steps: list[list[dict[str, float]]] = [[] for _ in range(self.num_envs)]
        self._ended = np.zeros(self.num_envs, dtype=bool)  # ended, not yet reset (no autoreset)

    def reset(self, seed: int | None = None):
        self._clear()
        return self.env.reset(seed)

    def reset_envs(self, mask: torch.Tensor):
        self._ended &= ~mask.cpu().numpy()
        return self.env.reset_envs(mask)

    def step(self, action: torch.Tensor, autoreset: bool = True):
        out = self.env.step(action, autoreset)
        info = out[4]
        keys = [k for k in info if k.startswith("diag/") or k in ("success", "reward/grasp")]
        values = {k: info[k].float().cpu().numpy() for k in keys}
        done = (out[2] | out[3]).cpu().numpy()
        for i in np.flatnonzero(~self._ended):
            self._steps[i].append({k: v[i] for k, v in values.items()})
            if done[i]:
                steps = self._steps[i]
                self.finished[i].append({k: np.array([s[k] for s in steps]) for k in keys})
                self._steps[i] = []
        if not autoreset:
            self._ended |= done
        return out

    def episodes(self, total: int) -> list[dict[str, np.ndarray]]:
        """The episodes ``trainer.evaluate`` counts: the first of each env's quota."""
        quota = episode_quota(total, self.num_envs)
        return [e for ended, k in zip(self.finished, quota, strict=True) for e in ended[:k]]

    def close(self) -> None:
        self.env.close()


def pick_cube_mode(ep: dict[str, np.ndarray]) -> str:
    if ep["success"][-1]:
        return "success"
    if ep["diag/cube_lift"].max() >= PickCubeConfig().lift_height:
        return "lifted, off-centre grasp"
    squeezed = np.flatnonzero(ep["diag/gripper_width"] < 2 * CUBE_HALF)
    if not len(squeezed):
        return "never closed"
    if ep["diag/tcp_to_cube"][squeezed[0]] > FAR_CLOSE:
        return "closed far above"
    return "grasped, not lifted" if ep["reward/grasp"].any() else "missed"


def peg_insert_mode(ep: dict[str, np.ndarray]) -> str:
    if ep["success"][-1]:
        return "success"
    if ep["diag/tip_depth"].max() > ENTERED:
        return "in the hole, short"
    if ep["diag/tip_xy"].min() < NEAR_HOLE:
        return "at the hole, not entering"
    return "never at the hole"


MODES = {
    "pick_cube": (
        pick_cube_mode,
        [
            "success",
            "lifted, off-centre grasp",
            "closed far above",
            "missed",
            "grasped, not lifted",
            "never closed",
        ],
    ),
    "peg_insert": (
        peg_insert_mode,
        ["success", "in the hole, short", "at the hole, not entering", "never at the hole"],
    ),
}


class BaseOnly:
    """Acts with the base policy's action, through the residual wrapper."""

    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        return obs["base_action"].clone()


def trace(run: SavedRun, agent, episodes: int, seed: int, num_envs: int) -> list[dict]:
    train = run.config["train"]
    inner = make_env(train["task"], num_envs, train["obs"], run.device, train["env"])
    traces = EpisodeTraces(inner)
    env = run.wrap(traces, seed)
    try:
        evaluate(agent, env, episodes, seed)
    finally:
        env.close()
    return traces.episodes(episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run or checkpoint directories")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=12345, help="robot-rl eval's default")
    parser.add_argument("--num-envs", type=int, default=8, help="robot-rl eval's default")
    parser.add_argument("--base-only", action="store_true", help="also the base alone")
    args = parser.parse_args()

    rows, header = [], None
    for path in args.runs:
        run = SavedRun.load(path)
        task = run.config["train"]["task"]
        if task not in MODES:
            raise SystemExit(f"{path}: no failure modes defined for task {task!r}")
        classify, names = MODES[task]
        if header not in (None, names):
            raise SystemExit("all runs must be of one task")
        header = names
        agents = [("", run.agent)]
        if args.base_only:
            if run.base is None or "base_action" not in run.config["obs_shapes"]:
                raise SystemExit(f"{path}: --base-only needs a residual run")
            agents.append((" (base alone)", BaseOnly()))
        for label, agent in agents:
            episodes = trace(run, agent, args.episodes, args.seed, args.num_envs)
            counts = Counter(map(classify, episodes))
            rows.append([f"`{path}`{label}"] + [str(counts[m]) for m in names])
    print("| run | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
