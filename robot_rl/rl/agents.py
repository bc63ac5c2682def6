"""Build a learner (and the env view it needs) from its config; the one place that knows every
algorithm."""

from __future__ import annotations

import torch

from robot_rl.batched_env import BatchedEnv
from robot_rl.rl.dsrl import DSRLNA, DSRLConfig
from robot_rl.rl.fasttd3 import FastTD3, FastTD3Config
from robot_rl.rl.residual import ResidualConfig, ResidualTD3
from robot_rl.rl.sac import SAC, SACConfig

ALGOS = {"sac": SACConfig, "fasttd3": FastTD3Config, "residual": ResidualConfig, "dsrl": DSRLConfig}
# Named presets for the Hydra ``algo`` group: the paper's FastTD3 sizes suit a GPU; on a CPU a
# 4096 batch through a 1024-512-256 C51 critic costs seconds per update.
PRESETS = {
    "sac": SACConfig(),
    "fasttd3": FastTD3Config(),
    "fasttd3_cpu": FastTD3Config(
        actor_hidden=[256, 256, 128], critic_hidden=[512, 256, 128], batch_size=1024
    ),
    "residual": ResidualConfig(),
    "dsrl": DSRLConfig(),
}
DEFAULT_NUM_ENVS = {"sac": 1, "fasttd3": 16, "residual": 1, "dsrl": 1}
NEEDS_BASE = ("residual", "dsrl")  # fine-tune a frozen base policy (base=PATH)


def build_agent(
    algo,
    obs_shapes: dict,
    action_dim: int,
    num_envs: int,
    device: torch.device,
    base=None,
) -> torch.nn.Module:
    shapes = {k: shape for k, (shape, _) in obs_shapes.items()}
    if isinstance(algo, FastTD3Config):
        return FastTD3(algo, shapes, action_dim, num_envs, device)
    if isinstance(algo, ResidualConfig):
        return ResidualTD3(algo, shapes, action_dim).to(device)
    if isinstance(algo, DSRLConfig):
        if algo.variant == "sac":
            return SAC(algo.as_sac(), shapes, action_dim).to(device)
        return DSRLNA(algo, shapes, action_dim, base).to(device)
    if isinstance(algo, SACConfig):  # after DSRLConfig, which extends it
        return SAC(algo, shapes, action_dim).to(device)
    raise ValueError(f"unknown algo config {type(algo).__name__}")


def wrap_env(algo, env: BatchedEnv, base, seed: int = 0) -> BatchedEnv:
    """The env as the learner sees it: through the frozen base policy for residual and DSRL."""
    from robot_rl.rl.base_policy_envs import LatentSteeringEnv, ResidualEnv

    if isinstance(algo, ResidualConfig):
        dims = algo.base_only_dims
        if dims is None:  # our tasks: the gripper command (dim 6) stays the base policy's
            dims = [6] if getattr(env, "runtime", None) is not None else []
        return ResidualEnv(env, base, algo.action_scale, seed, dims, algo.action_scales)
    if isinstance(algo, DSRLConfig):
        return LatentSteeringEnv(env, base, algo.action_magnitude)
    return env


# Settings whose default changed after they were added: a checkpoint written before the setting
# existed was trained with the value here, not with today's default.
DEFAULTS_BEFORE = {"sac": {"activation": "relu"}}


def saved_algo_values(values: dict) -> dict:
    """A checkpoint's algo settings, with the settings it predates filled in as it ran them."""
    return {**DEFAULTS_BEFORE.get(values.get("name"), {}), **values}


def algo_from_dict(values: dict):
    """Rebuild an algo config from a checkpoint's JSON."""
    name = values.get("name")
    if name not in ALGOS:
        raise ValueError(f"unknown algo {name!r}; choose one of {sorted(ALGOS)}")
    return ALGOS[name](**saved_algo_values(values))
