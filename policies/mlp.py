"""Behaviour cloning with an MLP: To observations -> a chunk of Ta actions, deterministic (MSE)
or Gaussian (negative log-likelihood, mean at deployment unless asked to sample)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robot_rl.policies.base import BasePolicy, ChunkPolicyConfig
from robot_rl.rl.networks import mlp


@dataclass
class MLPPolicyConfig(ChunkPolicyConfig):
    name: str = "mlp"
    """Policy type."""
    gaussian: bool = False
    """Gaussian head trained by likelihood instead of a deterministic MSE head."""


class MLPPolicy(BasePolicy):
    kind = "mlp"

    def __init__(self, cfg: MLPPolicyConfig, obs_shapes, action_dim: int, **bounds):
        super().__init__(cfg, obs_shapes, action_dim, **bounds)
        out = cfg.action_horizon * action_dim * (2 if cfg.gaussian else 1)
        self.net = mlp(self.cond_dim, cfg.hidden, out)

    def _head(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised mean (B, Ta, A) and, for a Gaussian head, log std."""
        out = self.net(cond).unflatten(-1, (self.action_horizon, -1))
        if not self.cfg.gaussian:
            return out, None
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(-5.0, 2.0)

    @torch.no_grad()
    def predict_action(self, obs, noise=None, generator=None, deterministic: bool = True):
        mean, log_std = self._head(self.condition(obs))
        if log_std is not None and not deterministic:
            eps = torch.randn(mean.shape, device=mean.device, generator=generator)
            mean = mean + log_std.exp() * eps
        return self.unnormalize_action(mean.clamp(-1.0, 1.0))

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = self.normalize_action(batch["action"])
        mean, log_std = self._head(self.condition(batch["obs"], augment=self.cfg.augment))
        if log_std is None:
            loss = F.mse_loss(mean, target)
        else:
            nll = 0.5 * ((target - mean) / log_std.exp()) ** 2 + log_std
            loss = (nll + 0.5 * math.log(2 * math.pi)).sum((-1, -2)).mean()
        return loss, {"loss/bc": loss.detach()}
