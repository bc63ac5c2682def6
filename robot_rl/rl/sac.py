"""SAC / RLPD, the SERL recipe: an ensemble of E LayerNorm critics with the target minimum over a
random subset of M (10/2 by default; 2/2 is plain SAC), update-to-data ratio as a setting,
automatic temperature, optional entropy term in the backup, and 50/50 demo sampling (the
trainer mixes the batches). Works from state, pixels or both: images go through a conv encoder
trained by the critic only, with DrQ random shifts on obs and next obs independently.

As in SERL, the last critic update of an env step also updates the actor and temperature, and
all three losses are taken at the same parameters (the actor's loss reaches the critic's
parameters with no gradient). They share one backward pass and one fused Adam step, and the
loss computation is compiled and runs its hidden matmuls in bf16 where that is fast
(``acceleration.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from robot_rl.rl.acceleration import AccelerationConfig, FastStep
from robot_rl.rl.losses import (
    check_critic_subset,
    check_target_range,
    random_subset,
    sac_actor_loss,
    sac_critic_loss,
    temperature_loss,
)
from robot_rl.rl.networks import (
    CriticEnsemble,
    ObsEncoder,
    TanhGaussianActor,
    call_detached,
    random_shift,
    soft_update,
    update_target_encoder,
)
from robot_rl.rl.replay import loss_inputs


@dataclass
class SACConfig(AccelerationConfig):
    """SAC/RLPD settings (defaults: RLPD as used by SERL)."""

    name: str = "sac"
    num_critics: int = 10
    """Critics in the ensemble (2 for plain SAC)."""
    critic_subset: int = 2
    """Critics in the random subset whose minimum forms the target."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of actor and critics."""
    activation: str = "tanh"
    """Hidden activation of actor and critics, after each LayerNorm: tanh (as SERL ships) or
    relu."""
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
    q_target_range: list[float] = field(default_factory=list)
    """TD targets are clamped into [lo, hi]; [] (the default) leaves them unclamped. [0, 1] fits
    a success reward that ends the episode (every return lies there)."""
    image_feature_dim: int = 64
    """Features per camera from the conv encoder."""
    augment: bool = True
    """DrQ random-shift augmentation for images."""


class SAC(nn.Module):
    def __init__(self, cfg: SACConfig, obs_shapes: dict[str, tuple[int, ...]], action_dim: int):
        super().__init__()
        self.cfg, self.action_dim = cfg, action_dim
        check_critic_subset(cfg.critic_subset, cfg.num_critics)
        check_target_range(cfg.q_target_range)
        self.encoder = ObsEncoder(obs_shapes, cfg.image_feature_dim)
        self.actor = TanhGaussianActor(
            self.encoder.dim, action_dim, cfg.hidden, activation=cfg.activation
        )
        self.critic = CriticEnsemble(
            cfg.num_critics, self.encoder.dim + action_dim, cfg.hidden, activation=cfg.activation
        )
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(cfg.init_temperature)).log())
        self.target_entropy = -action_dim / 2 if cfg.target_entropy is None else cfg.target_entropy
        critic_params = [*self.critic.parameters(), *self.encoder.encoders.parameters()]
        # Adam is per parameter, so one optimizer over the three groups steps exactly as three
        # would; a group whose loss was not computed has no gradient and is skipped.
        self.optimizer = torch.optim.Adam(
            [
                {"params": critic_params, "name": "critic"},
                {"params": [*self.actor.parameters()], "name": "actor"},
                {"params": [self.log_alpha], "name": "temperature"},
            ],
            lr=cfg.lr,
            fused=True,
        )
        self.train_step = FastStep(self.losses, self.optimizer, cfg)

    @property
    def updates_per_learn(self) -> int:
        """Gradient updates in one ``learn`` call."""
        return self.cfg.utd

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
        metrics = self.train_step(*loss_inputs(batch), update_actor=update_actor)
        self._soft_update()
        return metrics

    def losses(
        self,
        obs: dict[str, torch.Tensor],
        action: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
        next_obs: dict[str, torch.Tensor],
        update_actor: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The critic loss, plus the actor and temperature losses if ``update_actor``, summed;
        each reaches only its own parameters. obs/next_obs values (B, ...), action (B, A),
        reward and discount (B,)."""
        cfg = self.cfg
        obs, next_obs = self._augment(obs), self._augment(next_obs)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(self.encoder(next_obs))
            subset = random_subset(cfg.num_critics, cfg.critic_subset, alpha.device)
            next_features = self.target_encoder(next_obs)
            q_next = self.target_critic(next_features, next_action, subset)[..., 0]
        features = self.encoder(obs)
        q_pred = self.critic(features, action)[..., 0]
        loss, metrics = sac_critic_loss(
            q_pred,
            q_next,
            next_log_prob,
            reward,
            discount,
            alpha,
            cfg.entropy_backup,
            cfg.q_target_range,
        )
        if update_actor:
            features = features.detach()  # the encoder learns through the critic only
            pi_action, log_prob = self.actor(features)
            q_pi = call_detached(self.critic, features, pi_action)[..., 0]
            actor_loss, actor_metrics = sac_actor_loss(q_pi, log_prob, self.log_alpha.exp())
            t_loss, t_metrics = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            loss = loss + actor_loss + t_loss
            metrics = {**metrics, **actor_metrics, **t_metrics}
        return loss, metrics

    def _soft_update(self) -> None:
        soft_update([(self.target_critic, self.critic)], self.cfg.tau)
        update_target_encoder(self.target_encoder, self.encoder, self.cfg.tau)
