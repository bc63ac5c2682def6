"""Residual off-policy RL on a frozen base policy, after ResFiT (Ankile et al., 2025).

Runs on ``base_policy_envs.ResidualEnv``: observations carry the base action b; the agent
acts with a = clamp(b + scale * r, -1, 1), where the residual r = tanh(...) in [-1, 1] and
scale is ``action_scale`` (0 on dims left to the base). As in ResFiT, the critic scores the
executed action Q(s, a), so online data and demonstrations (replayed with the actions the
demonstrator took) share one action space. Only the actor sees b; the critic sees (s, a), as
in ResFiT: a critic given b could tell demonstrations (a far from b, always successful) from
online data (a near b) by a - b alone and would teach the actor to move away from the base.
TD3 learner: deterministic residual actor whose last layer starts at zero (so the first rollouts
are exactly the base policy's), a LayerNorm critic ensemble with the target minimum over a
random subset at b' + pi_target(s') plus clipped noise, TD targets clamped to the returns the
task can pay, the actor on the mean over critics, n-step returns, critic-only warm-up, separate
actor and critic learning rates and gradient clipping. Critic and actor losses are taken at the
same parameters and share one backward pass and one Adam step (compiled, bf16 where fast).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from robot_rl.rl.acceleration import AccelerationConfig, FastStep
from robot_rl.rl.base_policy_envs import residual_scale
from robot_rl.rl.losses import (
    check_critic_subset,
    check_target_range,
    ensemble_actor_loss,
    policy_conservative_penalty,
    random_subset,
    sac_critic_loss,
)
from robot_rl.rl.networks import (
    CriticEnsemble,
    DeterministicActor,
    ObsEncoder,
    call_detached,
    soft_update,
    update_target_encoder,
)
from robot_rl.rl.replay import loss_inputs


@dataclass
class ResidualConfig(AccelerationConfig):
    """Residual TD3 settings (ResFiT defaults unless noted)."""

    name: str = "residual"
    action_scale: float = 0.05
    """Largest residual per action dimension, in action units (ResFiT's simulation runs use
    0.04-0.1; at 0.2 the residual drove our delta-pose bases to 0% success, see README)."""
    action_scales: list[float] = field(default_factory=list)
    """Largest residual for each action dim, replacing ``action_scale`` where given (one entry
    per dim; ``base_only_dims`` stay 0). Noise stays in action units on every dim, but the L2
    term counts each dim's residual as a share of its own scale (in units of ``action_scale``),
    so a dim given more authority is not held back harder for it."""
    num_critics: int = 10
    """Critics in the ensemble."""
    critic_subset: int = 2
    """Critics in the random subset whose minimum forms the target."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden sizes of actor and critics."""
    actor_lr: float = 1e-4
    """Actor learning rate. ResFiT uses 1e-6; with Adam every weight moves ~lr per update, and at
    1e-6 none of our 9 runs with this critic rose above its base. At 1e-4, with the
    shaped reward: PickCube BC-MLP 56% -> 88% by 20k (3 seeds), PegInsert BC-MLP 24% -> 96% by
    20k on its current observation (5 seeds; README)."""
    critic_lr: float = 1e-4
    """Critic learning rate."""
    tau: float = 0.005
    """Soft target update rate (actor and critics)."""
    gamma: float = 0.99
    """Discount."""
    batch_size: int = 256
    """Batch size (online + demo)."""
    utd: int = 4
    """Critic updates per env step."""
    actor_every: int = 2
    """Actor (and target) update every this many critic updates (TD3's delay)."""
    n_step: int = 3
    """n-step returns."""
    critic_warmup: int = 3000
    """Learn calls (one per env step once learning starts) of critic-only learning before the
    actor moves."""
    authority_ramp: int = 0
    """Learn calls after the critic warm-up over which the residual's authority (the share of
    ``action_scale`` the actor may use) rises linearly from 0 to 1; 0: all of it at once (the
    residual then reaches about half of ``action_scale`` within a few hundred env steps). A ramp
    bounds how far the arm strays from the base while the critic first sees the residual's
    effects; over 3000 calls it delayed the early dip in success but did not prevent it (README)."""
    exploration_std: float = 0.01
    """Gaussian exploration noise on the residual, in action units (small: a BC base driving
    delta-pose actions drifts off its data under per-step noise of a few hundredths)."""
    warmup_exploration_std: float | None = None
    """Exploration noise while the critic warms up (the residual is still 0 then); None: as
    ``exploration_std``. Wider noise shows the critic residuals of the size the actor will use
    before the actor follows its action gradient (ResFiT's default exploration std is 0.05);
    0.02 on PegInsert did not prevent the early dip in success (README)."""
    base_only_dims: list[int] | None = None
    """Action dims the residual leaves to the base policy; None: the gripper of our tasks (a
    residual on a position-controlled gripper only weakens the grasp), none for gym envs (the
    trainer records the resolved list in the run's config)."""
    target_noise: float = 0.05
    """Target policy smoothing noise std, in action units."""
    target_noise_clip: float = 0.3
    """Clip of the target policy noise, in action units."""
    q_target_range: list[float] | None = None
    """TD targets are clamped into [lo, hi] (ResFiT's clip_q_target_to_reward_range); [] leaves
    them unclamped. None: [0, 1] on our tasks with a sparse success reward that ends the
    episode (every return lies there), unclamped otherwise; the trainer records what it chose."""
    residual_l2: float = 10.0
    """Weight of the squared residual (action units, summed over dims) in the actor loss;
    ResFiT's ``action_l2_reg_weight`` (10 in several of its configs). It holds the residual at
    dQ/da / (2 * weight) per dim, so a critic with noisy action gradients cannot drag it far.
    It is in units of Q: 10 suits a success reward (Q <= 1); with our shaped reward (Q ~20-35)
    300 took PegInsert's 26% base to 92% (87% at 10) on its 15-dim state but held PickCube's
    residual too tightly; on PegInsert's current observation 10 does better (96% against 88%;
    README)."""
    actor_pessimism: float = 0.0
    """The actor maximises mean - actor_pessimism * std over the critic ensemble (0: the mean,
    as ResFiT); a positive value keeps the residual where the critics agree, i.e. have data."""
    conservative_weight: float = 0.0
    """Weight of a CQL-style term in the critic loss, in units of Q: it lowers the critics at
    the actor's action and raises them at the batch's, sum over critics of mean_B
    [Q(s, b + scale * pi(s)) - Q(s, a)] (0: off, as ResFiT). Aimed at the early dip in success,
    where the actor follows action gradients that the critics extrapolate off their data; on
    PegInsert at 1-10 it held the residual smaller but did not prevent the dip (README)."""
    grad_clip: float = 1.0
    """Gradient norm clip for actor and critics."""
    image_feature_dim: int = 64
    """Features per camera from the conv encoder."""


class ResidualTD3(nn.Module):
    def __init__(self, cfg: ResidualConfig, obs_shapes: dict[str, tuple[int, ...]], action_dim):
        super().__init__()
        if "base_action" not in obs_shapes:
            raise ValueError("the residual learner needs the base action in its observations")
        check_target_range(cfg.q_target_range)
        self.cfg, self.action_dim = cfg, action_dim
        self.register_buffer(
            "scale",
            residual_scale(
                cfg.action_scale, cfg.base_only_dims, action_dim, action_scales=cfg.action_scales
            ),
        )
        # recomputed from learn_calls, so checkpoints without it load and resume the ramp
        self.register_buffer("authority", torch.ones(()), persistent=False)
        critic_shapes = {k: s for k, s in obs_shapes.items() if k != "base_action"}
        self.encoder = ObsEncoder(critic_shapes, cfg.image_feature_dim)
        self.actor = DeterministicActor(
            self.encoder.dim + action_dim, action_dim, cfg.hidden, layer_norm=True
        )
        nn.init.zeros_(self.actor.net[-1].weight)
        check_critic_subset(cfg.critic_subset, cfg.num_critics)
        self.critic = CriticEnsemble(cfg.num_critics, self.encoder.dim + action_dim, cfg.hidden)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_params = [*self.critic.parameters(), *self.encoder.encoders.parameters()]
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.critic_params, "lr": cfg.critic_lr, "name": "critic"},
                {"params": [*self.actor.parameters()], "lr": cfg.actor_lr, "name": "actor"},
            ],
            fused=True,
        )
        self.train_step = FastStep(self.losses, self.optimizer, cfg)
        self.updates = self.learn_calls = 0  # Python counters: no device sync per update
        self._set_authority()

    def _set_authority(self) -> None:
        """Without a ramp the authority stays 1: no device write per learn call."""
        if ramp := self.cfg.authority_ramp:
            past_warmup = self.learn_calls - self.cfg.critic_warmup
            self.authority.fill_(min(1.0, max(0, past_warmup) / ramp))

    def get_extra_state(self) -> torch.Tensor:
        """The counters travel with the weights, so a resumed run keeps its warm-up and delay."""
        return torch.tensor([self.updates, self.learn_calls])

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.updates, self.learn_calls = (int(v) for v in state)
        self._set_authority()

    def _units(self, std: float) -> torch.Tensor:
        """(A,): a noise std in action units as residual units of each dim (the actor's [-1, 1]
        is scaled by that dim's scale); 0 on the dims left to the base."""
        return torch.where(self.scale > 0, std / self.scale.clamp_min(1e-12), 0.0)

    def _l2_units(self, residual: torch.Tensor) -> torch.Tensor:
        """(B, A) residual in [-1, 1] -> what the L2 term weighs: ``action_scale`` times it on
        the dims the residual acts on (each dim's residual as a share of its own scale)."""
        return torch.where(self.scale > 0, self.cfg.action_scale, 0.0) * residual

    def _residual(self, actor: nn.Module, features: torch.Tensor, obs: dict) -> torch.Tensor:
        """(B, A) residual in [-1, 1] from (B, F) critic features (no gradient to the encoder)
        and the (B, A) base action, within the present authority."""
        return self.authority * actor(torch.cat([features.detach(), obs["base_action"]], -1))

    def executed(self, base_action: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """(B, A) base actions and residuals in [-1, 1] -> executed actions, as the env does."""
        return (base_action + self.scale * residual).clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        residual = self._residual(self.actor, self.encoder(obs), obs)
        if not deterministic:
            residual = residual + self._units(self._exploration_std()) * torch.randn_like(residual)
        return self.executed(obs["base_action"], residual.clamp(-1.0, 1.0))

    @property
    def _past_warmup(self) -> bool:
        """Whether the critic-only warm-up is over (the actor learns from the next update on)."""
        return self.learn_calls > self.cfg.critic_warmup

    def _exploration_std(self) -> float:
        if not self._past_warmup and self.cfg.warmup_exploration_std is not None:
            return self.cfg.warmup_exploration_std
        return self.cfg.exploration_std

    def episode_done(self, done: torch.Tensor) -> None:
        """Nothing per episode: the env wrapper resets the base policy's queue."""

    @property
    def updates_per_learn(self) -> int:
        """Gradient updates in one ``learn`` call."""
        return self.cfg.utd

    def learn(self, sample) -> dict[str, torch.Tensor]:
        self.learn_calls += 1
        self._set_authority()
        metrics = {}
        for _ in range(self.cfg.utd):
            metrics = self.update(sample(self.cfg.batch_size), update_actor=self._past_warmup)
        return metrics

    def update(self, batch: dict, update_actor: bool = True) -> dict[str, torch.Tensor]:
        """One critic step; an actor step too on every ``actor_every``-th update if
        ``update_actor``."""
        self.updates += 1
        actor = update_actor and self.updates % self.cfg.actor_every == 0
        groups = [self.critic_params] + ([list(self.actor.parameters())] if actor else [])
        metrics = self.train_step(
            *loss_inputs(batch),
            update_actor=actor,
            clip=[(params, self.cfg.grad_clip) for params in groups],
        )
        self._soft_update(actor)
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
        """The critic loss on executed actions (B, A), plus the actor's if ``update_actor``,
        summed; each reaches only its own parameters."""
        cfg = self.cfg
        with torch.no_grad():
            next_features = self.target_encoder(next_obs)
            next_residual = self._residual(self.target_actor, next_features, next_obs)
            clip = self._units(cfg.target_noise_clip)
            noise = torch.randn_like(next_residual) * self._units(cfg.target_noise)
            next_residual = (next_residual + noise.clamp(-clip, clip)).clamp(-1.0, 1.0)
            next_action = self.executed(next_obs["base_action"], next_residual)
            subset = random_subset(cfg.num_critics, cfg.critic_subset, next_action.device)
            q_next = self.target_critic(next_features, next_action, subset)[..., 0]
        features = self.encoder(obs)
        if cfg.conservative_weight:
            with torch.no_grad():
                policy_residual = self._residual(self.actor, features, obs)
                policy_action = self.executed(obs["base_action"], policy_residual)
            # one critic call over both action sets: (E, 2B)
            q_both = self.critic(features.repeat(2, 1), torch.cat([action, policy_action]))
            q_pred, q_policy = q_both[..., 0].chunk(2, dim=1)
            penalty, penalty_metrics = policy_conservative_penalty(
                q_policy, q_pred, cfg.conservative_weight
            )
        else:
            q_pred = self.critic(features, action)[..., 0]
            penalty, penalty_metrics = 0.0, {}
        zero = torch.zeros((), device=q_pred.device)
        loss, metrics = sac_critic_loss(
            q_pred, q_next, zero, reward, discount, zero, False, cfg.q_target_range or ()
        )
        loss, metrics = loss + penalty, {**metrics, **penalty_metrics}
        if update_actor:
            features = features.detach()
            residual = self._residual(self.actor, features, obs)
            executed = self.executed(obs["base_action"], residual)
            actor_loss, actor_metrics = ensemble_actor_loss(
                call_detached(self.critic, features, executed)[..., 0],
                self._l2_units(residual),
                cfg.residual_l2,
                cfg.actor_pessimism,
            )
            loss = loss + actor_loss
            metrics = {
                **metrics,
                **actor_metrics,
                "residual/abs_mean": residual.detach().abs().mean(),
            }
        return loss, metrics

    def _soft_update(self, actor: bool) -> None:
        pairs = [(self.target_critic, self.critic)]
        soft_update(pairs + ([(self.target_actor, self.actor)] if actor else []), self.cfg.tau)
        update_target_encoder(self.target_encoder, self.encoder, self.cfg.tau)
