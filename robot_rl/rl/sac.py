"""SAC / RLPD, the SERL recipe: an ensemble of E LayerNorm critics with the target minimum over a
random subset of M (10/2 by default; 2/2 is plain SAC), update-to-data ratio as a setting,
automatic temperature, optional entropy term in the backup, and 50/50 demo sampling (the
trainer mixes the batches). Works from state, pixels or both: images go through a conv encoder
trained by the critic only, with DrQ random shifts on obs and next obs independently.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from robot_rl.rl.losses import random_subset, sac_actor_loss, sac_critic_loss, temperature_loss
from robot_rl.rl.networks import (
    CriticEnsemble,
    ObsEncoder,
    TanhGaussianActor,
    random_shift,
    soft_update,
    update_target_encoder,
)


@dataclass
class SACConfig:
    """SAC/RLPD settings (defaults: RLPD as used by SERL)."""

    name: str = "sac"
    num_critics: int = 10
    """Critics in the ensemble (2 for plain SAC)."""
    critic_subset: int = 2
    """Critics in the random subset whose minimum forms the target."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of actor and critics."""
    lr: float = 3e-4
    """Learning rate of actor, critics, encoder and temperature."""
    tau: float = 0.005
    """Soft target update rate."""
    gamma: float = 0.99
    """Discount."""
    batch_size: int = 256
    """Batch size (online + demo)."""
    utd: int = 4
    """Critic updates per env step; the actor and temperature update once per env step."""
    init_temperature: float = 0.01
    """Initial entropy temperature."""
    target_entropy: float | None = None
    """Target entropy; None means -|A|/2."""
    entropy_backup: bool = False
    """Subtract alpha log pi in the critic target (RLPD drops it)."""
    n_step: int = 1
    """n-step returns."""
    image_feature_dim: int = 64
    """Features per camera from the conv encoder."""
    augment: bool = True
    """DrQ random-shift augmentation for images."""


class SAC(nn.Module):
    def __init__(self, cfg: SACConfig, obs_shapes: dict[str, tuple[int, ...]], action_dim: int):
        super().__init__()
        self.cfg, self.action_dim = cfg, action_dim
        if cfg.critic_subset > cfg.num_critics or cfg.critic_subset < 1:
            raise ValueError(f"critic_subset must be in [1, {cfg.num_critics}]")
        self.encoder = ObsEncoder(obs_shapes, cfg.image_feature_dim)
        self.actor = TanhGaussianActor(self.encoder.dim, action_dim, cfg.hidden)
        self.critic = CriticEnsemble(cfg.num_critics, self.encoder.dim + action_dim, cfg.hidden)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(cfg.init_temperature)).log())
        self.target_entropy = -action_dim / 2 if cfg.target_entropy is None else cfg.target_entropy
        critic_params = list(self.critic.parameters()) + list(self.encoder.encoders.parameters())
        self.critic_opt = torch.optim.Adam(critic_params, lr=cfg.lr, fused=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)

    def learn(self, sample) -> dict[str, torch.Tensor]:
        """One env step's worth of learning: ``utd`` critic updates, the actor on the last.
        ``sample(batch_size)`` returns a batch."""
        metrics = {}
        for i in range(self.cfg.utd):
            metrics = self.update(sample(self.cfg.batch_size), update_actor=i == self.cfg.utd - 1)
        return metrics

    def episode_done(self, done: torch.Tensor) -> None:
        """Nothing per episode for SAC."""

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        action, _ = self.actor(self.encoder(obs), deterministic)
        return action

    def _augment(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.cfg.augment:
            return obs
        return {k: random_shift(v) if k in self.encoder.image_keys else v for k, v in obs.items()}

    def update(self, batch: dict, update_actor: bool) -> dict[str, torch.Tensor]:
        """One critic step, plus actor and temperature steps if ``update_actor``."""
        cfg = self.cfg
        obs, next_obs = self._augment(batch["obs"]), self._augment(batch["next_obs"])
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(self.encoder(next_obs))
            subset = random_subset(cfg.num_critics, cfg.critic_subset, alpha.device)
            next_features = self.target_encoder(next_obs)
            q_next = self.target_critic(next_features, next_action, subset)[..., 0]
        features = self.encoder(obs)
        q_pred = self.critic(features, batch["action"])[..., 0]
        loss, metrics = sac_critic_loss(
            q_pred,
            q_next,
            next_log_prob,
            batch["reward"],
            batch["discount"],
            alpha,
            cfg.entropy_backup,
        )
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        self._soft_update()
        if update_actor:
            features = features.detach()  # the encoder learns through the critic only
            action, log_prob = self.actor(features)
            self.critic.requires_grad_(False)
            actor_loss, actor_metrics = sac_actor_loss(
                self.critic(features, action)[..., 0], log_prob, self.log_alpha.exp()
            )
            self.critic.requires_grad_(True)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            t_loss, t_metrics = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            self.alpha_opt.zero_grad(set_to_none=True)
            t_loss.backward()
            self.alpha_opt.step()
            metrics.update(actor_metrics, **t_metrics)
        return metrics

    def _soft_update(self) -> None:
        soft_update([(self.target_critic, self.critic)], self.cfg.tau)
        update_target_encoder(self.target_encoder, self.encoder, self.cfg.tau)
