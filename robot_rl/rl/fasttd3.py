"""FastTD3 (Seo et al., 2025): TD3 for many parallel envs.

Per-env exploration noise std drawn from [std_min, std_max] and redrawn only when that env's
episode ends; two C51 critic heads with clipped double Q on distributions; no target actor
(the target action is the current actor plus clipped noise); delayed actor updates; n-step
returns; large batches drawn evenly across envs; AdamW with weight decay; running observation
normalisation. bf16 autocast and ``torch.compile`` switch on by themselves where they pay
(``acceleration.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from robot_rl.rl.acceleration import AccelerationConfig, FastStep
from robot_rl.rl.losses import deterministic_actor_loss, distributional_cdq_loss
from robot_rl.rl.networks import (
    CriticEnsemble,
    DeterministicActor,
    ObsEncoder,
    call_detached,
    soft_update,
)
from robot_rl.rl.replay import loss_inputs


@dataclass
class FastTD3Config(AccelerationConfig):
    """FastTD3 settings (defaults from the paper, batch sized for a CPU)."""

    name: str = "fasttd3"
    actor_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    """Actor MLP."""
    critic_hidden: list[int] = field(default_factory=lambda: [1024, 512, 256])
    """Critic MLP."""
    atoms: int = 101
    """C51 atoms."""
    v_min: float | None = None
    """Lowest return on the critic support. None: chosen by task, see ``with_support``."""
    v_max: float | None = None
    """Highest return on the critic support. None: chosen by task, see ``with_support``."""
    std_min: float = 0.001
    """Lower end of the per-env exploration std range."""
    std_max: float = 0.4
    """Upper end of the per-env exploration std range."""
    policy_noise: float = 0.001
    """Std of the noise on the target action."""
    noise_clip: float = 0.5
    """Clip of that noise."""
    lr: float = 3e-4
    """AdamW learning rate (actor and critic)."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    tau: float = 0.1
    """Soft target update rate."""
    gamma: float = 0.99
    """Discount."""
    n_step: int = 3
    """n-step returns."""
    batch_size: int = 4096
    """Batch size, drawn evenly across envs (32768 in the paper on a GPU)."""
    updates_per_step: int = 2
    """Critic updates per (batched) env step."""
    policy_delay: int = 2
    """Actor update every this many critic updates."""
    preactivation_l2: float = 0.0
    """Weight of the actor's squared output before its tanh in the actor loss (0: the paper).
    Keeps actions out of tanh's flat tails, where the actor stops learning. With no bound it
    also holds actions near 0 while the critic is still flat (from scratch at 0.01, PickCube
    never reached); 0.01 with a bound of 2 solved it (README)."""
    preactivation_bound: float = 0.0
    """The penalty counts only the part of |preactivation| beyond this (tanh(2) = 0.96), so
    actions inside it are free while the actor is kept out of the flat tails."""


# The support where the task says nothing: room for our shaped rewards' returns.
DEFAULT_SUPPORT = (-20.0, 200.0)


def with_support(cfg: FastTD3Config, returns: list[float] | tuple = ()) -> FastTD3Config:
    """``cfg`` with an unset ``v_min``/``v_max`` taken from ``returns`` ([lo, hi], the range the
    task's returns lie in, e.g. [0, 1] for a sparse success reward that ends the episode), else
    from ``DEFAULT_SUPPORT``. A support that lies much wider than the returns leaves them a few
    atoms: on PickCube from demos, -20..200 ended at 18% after 30k env steps where 0..1 ended at
    68% (README)."""
    lo, hi = returns or DEFAULT_SUPPORT
    cfg = replace(
        cfg,
        v_min=float(lo) if cfg.v_min is None else cfg.v_min,
        v_max=float(hi) if cfg.v_max is None else cfg.v_max,
    )
    if not cfg.v_min < cfg.v_max:
        raise ValueError(f"FastTD3 needs v_min < v_max, got {cfg.v_min} and {cfg.v_max}")
    return cfg


class FastTD3(nn.Module):
    def __init__(
        self,
        cfg: FastTD3Config,
        obs_shapes: dict[str, tuple[int, ...]],
        action_dim: int,
        num_envs: int,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        cfg = with_support(cfg)  # a no-op where the trainer has chosen by task
        self.cfg, self.action_dim = cfg, action_dim
        device = torch.device(device)
        self.encoder = ObsEncoder(obs_shapes)
        if self.encoder.image_keys:
            raise ValueError("FastTD3 here learns from state; use algo=sac for pixels")
        self.actor = DeterministicActor(self.encoder.dim, action_dim, cfg.actor_hidden)
        self.critic = CriticEnsemble(
            2, self.encoder.dim + action_dim, cfg.critic_hidden, atoms=cfg.atoms
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [*self.critic.parameters()], "name": "critic"},
                {"params": [*self.actor.parameters()], "name": "actor"},
            ],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=True,
        )
        self.register_buffer("noise_std", torch.empty(num_envs))
        self.redraw_noise(torch.ones(num_envs, dtype=torch.bool))
        self.updates = 0
        self.to(device)
        self.train_step = FastStep(self.losses, self.optimizer, cfg)

    @property
    def updates_per_learn(self) -> int:
        """Gradient updates in one ``learn`` call."""
        return self.cfg.updates_per_step

    def get_extra_state(self) -> torch.Tensor:
        """The update counter travels with the weights, so a resumed run keeps the actor's
        delay in phase."""
        return torch.tensor([self.updates])

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.updates = int(state[0])

    def learn(self, sample) -> dict[str, torch.Tensor]:
        """One batched env step's worth of learning: ``updates_per_step`` critic updates."""
        metrics = {}
        for _ in range(self.cfg.updates_per_step):
            metrics = self.update(sample(self.cfg.batch_size))
        return metrics

    def episode_done(self, done: torch.Tensor) -> None:
        self.redraw_noise(done)

    @torch.no_grad()
    def redraw_noise(self, done: torch.Tensor) -> None:
        """New exploration std for the envs whose episode ended, (N,) bool."""
        fresh = torch.empty_like(self.noise_std).uniform_(self.cfg.std_min, self.cfg.std_max)
        self.noise_std.copy_(torch.where(done.to(self.noise_std.device), fresh, self.noise_std))

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        action = self.actor(self.encoder(obs))
        if deterministic:
            return action
        noise = torch.randn_like(action) * self.noise_std[: action.shape[0], None]
        return (action + noise).clamp(-1.0, 1.0)

    def losses(self, obs, action, reward, discount, next_obs, update_actor: bool):
        """C51 clipped double Q on distributions, plus -min over heads of E[Q(s, pi(s))] for the
        actor if ``update_actor`` (taken at the same parameters, reaching the actor only).
        obs/next_obs values (B, D), action (B, A), reward and discount (B,)."""
        cfg = self.cfg
        with torch.no_grad():
            next_features = self.encoder(next_obs)
            noise = (torch.randn_like(action) * cfg.policy_noise).clamp(
                -cfg.noise_clip, cfg.noise_clip
            )
            next_action = (self.actor(next_features) + noise).clamp(-1.0, 1.0)
            next_logits = self.target_critic(next_features, next_action)
        features = self.encoder(obs)
        logits = self.critic(features, action)
        loss, metrics = distributional_cdq_loss(
            logits, next_logits, reward, discount, cfg.v_min, cfg.v_max
        )
        if update_actor:
            pre = self.actor.preactivation(features)
            pi_logits = call_detached(self.critic, features, torch.tanh(pre))
            actor_loss, actor_metrics = deterministic_actor_loss(
                pi_logits, cfg.v_min, cfg.v_max, pre, cfg.preactivation_l2, cfg.preactivation_bound
            )
            loss, metrics = loss + actor_loss, {**metrics, **actor_metrics}
        return loss, metrics

    def update(self, batch: dict, update_actor: bool | None = None) -> dict[str, torch.Tensor]:
        """One critic update; the actor every ``policy_delay`` critic updates."""
        self.updates += 1
        if update_actor is None:
            update_actor = self.updates % self.cfg.policy_delay == 0
        metrics = self.train_step(*loss_inputs(batch), update_actor=update_actor)
        soft_update([(self.target_critic, self.critic)], self.cfg.tau)
        return metrics
