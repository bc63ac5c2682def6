"""The interface every base policy shares, and its storage (safetensors + JSON, no pickle).

A base policy maps an observation history to an action chunk:
``predict_action(obs) -> (B, Ta, A)`` with ``obs[k]`` shaped (B, To, ...), and is trained by
``compute_loss(batch) -> (loss, metrics)`` on ``robot_rl.data.sequences.ChunkDataset`` batches.
Its normalisers (observation statistics, action bounds) are buffers, so they are saved with the
weights.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robot_rl.rl.networks import ObsEncoder, random_shift

WEIGHTS, CONFIG = "policy.safetensors", "policy.json"


@dataclass
class ChunkPolicyConfig:
    """Settings every base policy shares; each kind adds its own."""

    name: str = ""
    """Policy type."""
    obs_horizon: int = 1
    """Observations the policy sees (To)."""
    action_horizon: int = 4
    """Actions predicted and executed per inference (Ta)."""
    hidden: list[int] = field(default_factory=lambda: [512, 512, 512])
    """Hidden layer sizes (of the denoiser, for diffusion)."""
    image_feature_dim: int = 64
    """Features per camera from the conv encoder."""
    augment: bool = True
    """DrQ random shifts on images while training."""


class BasePolicy(nn.Module, abc.ABC):
    """Shared plumbing: observation encoding over a history, action (de)normalisation."""

    kind: str = ""

    def __init__(
        self,
        cfg: ChunkPolicyConfig,
        obs_shapes: dict[str, tuple[int, ...]],
        action_dim: int,
        action_low: float = -1.0,
        action_high: float = 1.0,
    ):
        super().__init__()
        self.cfg, self.obs_shapes, self.action_dim = cfg, dict(obs_shapes), action_dim
        self.obs_horizon, self.action_horizon = cfg.obs_horizon, cfg.action_horizon
        self.encoder = ObsEncoder(obs_shapes, cfg.image_feature_dim)
        self.register_buffer("action_low", torch.full((action_dim,), float(action_low)))
        self.register_buffer("action_high", torch.full((action_dim,), float(action_high)))
        self.cond_dim = self.encoder.dim * self.obs_horizon

    # -- normalisation --------------------------------------------------------------------------
    def fit_normalizer(self, obs: dict[str, torch.Tensor]) -> None:
        """Observation statistics from the whole dataset (time-first arrays), set once."""
        if self.encoder.vector_keys:
            self.encoder.update_norm(obs)

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return 2 * (action - self.action_low) / (self.action_high - self.action_low) - 1

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.action_low + (action + 1) * 0.5 * (self.action_high - self.action_low)

    def condition(self, obs: dict[str, torch.Tensor], augment: bool = False) -> torch.Tensor:
        """Encode (B, To, ...) observations to (B, To * features)."""
        b = next(iter(obs.values())).shape[0]
        flat = {k: v.flatten(0, 1) for k, v in obs.items()}
        if augment:
            flat = {
                k: random_shift(v) if k in self.encoder.image_keys else v for k, v in flat.items()
            }
        return self.encoder(flat).reshape(b, -1)

    # -- interface ------------------------------------------------------------------------------
    @abc.abstractmethod
    def predict_action(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> torch.Tensor:
        """Action chunks (B, Ta, A) for observation histories ``obs[k]`` (B, To, ...)."""

    @abc.abstractmethod
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss on a ``ChunkDataset`` batch, and metrics to log."""

    # -- storage --------------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Atomically write weights and config to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "kind": self.kind,
            "cfg": dataclasses.asdict(self.cfg),
            "obs_shapes": {k: list(v) for k, v in self.obs_shapes.items()},
            "action_dim": self.action_dim,
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            **(extra or {}),
        }
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        for name, write in (
            (WEIGHTS, lambda p: save_file(state, str(p))),
            (CONFIG, lambda p: p.write_text(json.dumps(config, indent=2))),
        ):
            tmp = directory / f".{name}.tmp"
            write(tmp)
            os.replace(tmp, directory / name)
        return directory


def read_policy_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a policy checkpoint (no {CONFIG})")
    return json.loads(path.read_text())


def load_policy(directory: str | Path, device: str | torch.device = "cpu") -> BasePolicy:
    """A saved policy in eval mode, frozen (no parameter requires grad)."""
    from robot_rl.policies import POLICIES

    config = read_policy_config(directory)
    kind = config["kind"]
    if kind not in POLICIES:
        raise ValueError(f"{directory}: unknown policy kind {kind!r}")
    policy_cls, cfg_cls = POLICIES[kind]
    policy = policy_cls(
        cfg_cls(**config["cfg"]),
        {k: tuple(v) for k, v in config["obs_shapes"].items()},
        config["action_dim"],
    )
    state = load_file(str(Path(directory) / WEIGHTS), device=str(device))
    policy.load_state_dict(state)
    return policy.to(device).eval().requires_grad_(False)
