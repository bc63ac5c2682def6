"""B simulated worlds split into blocks; each block is one MuJoCo model holding several worlds.

One ``mj_step`` advances every world of a block with no Python per world, and blocks run on
parallel worker threads (MuJoCo releases the GIL while stepping). Per-world views such as
``block.qpos`` have shape (worlds_in_block, per_world_size) and alias the simulator's memory.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np

from robot_rl.drivers.worker_pool import BlockWorkers, split_rows
from robot_rl.sim.scene import TaskBodies, scene_xml, world_prefix

_OBJ = {
    "body": mujoco.mjtObj.mjOBJ_BODY,
    "site": mujoco.mjtObj.mjOBJ_SITE,
    "geom": mujoco.mjtObj.mjOBJ_GEOM,
    "camera": mujoco.mjtObj.mjOBJ_CAMERA,
    "joint": mujoco.mjtObj.mjOBJ_JOINT,
}


class WorldBlock:
    """One model with ``n`` worlds, covering global world indices ``rows``."""

    def __init__(self, xml: str, rows: slice):
        self.rows = rows
        self.n = rows.stop - rows.start
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        m, d, n = self.model, self.data, self.n
        self.nq, self.nv, self.nu = m.nq // n, m.nv // n, m.nu // n
        self.qpos = d.qpos.reshape(n, self.nq)
        self.qvel = d.qvel.reshape(n, self.nv)
        self.ctrl = d.ctrl.reshape(n, self.nu)
        self.qfrc_bias = d.qfrc_bias.reshape(n, self.nv)
        self.qfrc_gravcomp = d.qfrc_gravcomp.reshape(n, self.nv)
        self.qfrc_constraint = d.qfrc_constraint.reshape(n, self.nv)
        self._ids: dict[tuple[str, str], np.ndarray] = {}

    def ids(self, kind: str, name: str) -> np.ndarray:
        """(n,) ids of ``w<k>/name`` for every world k of this block."""
        key = (kind, name)
        if key not in self._ids:
            ids = [
                mujoco.mj_name2id(self.model, _OBJ[kind], world_prefix(k) + name)
                for k in range(self.n)
            ]
            if min(ids) < 0:
                raise KeyError(f"no {kind} named {name!r} in the scene")
            self._ids[key] = np.asarray(ids)
        return self._ids[key]

    def geoms_of_bodies(self, local: int, prefix: str) -> np.ndarray:
        """Geom ids of world ``local``'s bodies whose names start with ``prefix`` (cached)."""
        key = ("geoms_of_bodies", f"{local}/{prefix}")
        if key not in self._ids:
            full = world_prefix(local) + prefix
            bodies = [
                i for i in range(self.model.nbody) if self.model.body(i).name.startswith(full)
            ]
            self._ids[key] = np.flatnonzero(np.isin(self.model.geom_bodyid, bodies))
        return self._ids[key]


class MujocoWorlds:
    """B independent worlds of one task, in ``num_threads`` blocks on persistent threads."""

    def __init__(
        self, task: TaskBodies, num_worlds: int, num_threads: int = 0, timestep: float = 0.001
    ):
        self.num_worlds = num_worlds
        threads = num_threads or min(os.cpu_count() or 1, num_worlds)
        rows = split_rows(num_worlds, threads)
        self.blocks = [WorldBlock(scene_xml(task, r.stop - r.start, timestep), r) for r in rows]
        self.workers = BlockWorkers(num_worlds, len(self.blocks))
        self.dt = float(self.blocks[0].model.opt.timestep)

    def locate(self, world: int) -> tuple[WorldBlock, int]:
        """The block holding global world ``world`` and its index inside that block."""
        for block in self.blocks:
            if block.rows.start <= world < block.rows.stop:
                return block, world - block.rows.start
        raise IndexError(world)

    def run(self, fn) -> None:
        """Call ``fn(block)`` for every block on its own thread."""
        self.workers.run(lambda index, _: fn(self.blocks[index]))

    def gather(self, fn) -> np.ndarray:
        """Concatenate ``fn(block)`` (leading axis: the block's worlds) over blocks: (B, ...)."""
        return np.concatenate([fn(block) for block in self.blocks], axis=0)

    def body_pos(self, name: str) -> np.ndarray:
        return self.gather(lambda b: b.data.xpos[b.ids("body", name)])

    def body_quat(self, name: str) -> np.ndarray:
        return self.gather(lambda b: b.data.xquat[b.ids("body", name)])

    def site_pos(self, name: str) -> np.ndarray:
        return self.gather(lambda b: b.data.site_xpos[b.ids("site", name)])

    def origins(self) -> np.ndarray:
        """(B, 3) world origins (the arm base of each world)."""
        return self.gather(lambda b: b.model.body_pos[b.ids("body", "link0")])

    def close(self) -> None:
        self.workers.close()
