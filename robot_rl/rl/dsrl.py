"""DSRL (Wagenmaker et al., 2025): steer a frozen diffusion policy through its initial noise.

Runs on ``base_policy_envs.LatentSteeringEnv``, whose action u in [-1, 1]^(Ta * A) is the
latent w = action_magnitude * u of one chunk. Two variants:

- ``variant=sac``: plain SAC in noise space (``sac.SAC``, replay stores u).
- ``variant=na`` (noise aliasing), this file: an action critic Q^A(s, a) trained on executed
  chunks a = pi_dp(s, w) (recomputed exactly: DDIM with eta = 0 is deterministic given s and w);
  a noise critic Q^W(s, w) distilled toward Q^A(s, pi_dp(s, w)) for w ~ N(0, I) with the target
  detached; a latent actor maximising Q^W - alpha log pi. The three losses (and the
  temperature's) are taken at the same parameters and share one backward pass and one Adam
  step, compiled and in bf16 where that is fast, as ``sac.SAC`` does.

The base policy is held outside the module's parameters: it is never optimised or saved here.
Shapes: B batch, L = Ta * A latent/chunk size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.policies.base import BasePolicy
from robot_rl.rl.acceleration import FastStep
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
    soft_update,
    update_target_encoder,
)
from robot_rl.rl.replay import loss_inputs
from robot_rl.rl.sac import SACConfig


@dataclass
class DSRLConfig(SACConfig):
    """DSRL settings: SAC's (``sac.SACConfig``) with these changes. Sized for a CPU: the paper
    uses 3x2048 MLPs and UTD 20 on a GPU; here 2x256 and 8 updates per chunk (2 for NA). The initial
    temperature stays small (0.01) and the backup has no entropy term: with a 0/1 success reward
    and a 28-D latent, an entropy bonus near 1 swamps the reward for the whole of a short run."""

    name: str = "dsrl"
    variant: str = "sac"
    """sac (SAC in noise space) or na (noise aliasing; three DDIM passes per update, so about
    5x slower per update on a CPU)."""
    action_magnitude: float = 1.5
    """Latent bound: w = action_magnitude * tanh-squashed action."""
    num_critics: int = 2
    """Critics per ensemble (action and noise critics). 10 for na at UTD 4 (the target the minimum
    of a random 2, as RLPD) did no better on PickCube over 20k env steps: last checkpoints
    94/92/92/84/84% against 88/96/86/100/90% with 2 (5 seeds each), curves 93% vs 86%."""
    utd: int | None = None
    """Critic updates per chunk; None: the variant's own, 8 for sac and 2 for na. PickCube from a
    36% base over 20k env steps: sac 97% with 8 vs 93% with 4 (3 seeds); na's 20-episode curves
    average 93% from 5k on with 2 against 86% with 4 (higher on each of 5 seeds; 79% vs 85% at
    10k with 8 vs 4), at half the cost, though its last checkpoints end at 87% vs 92%."""
    activation: str = "relu"
    """Hidden activation of actor and critics (the fine-tuning figures were measured with relu)."""
    target_entropy: float | None = 0.0
    """Target entropy (the paper's 0)."""
    q_target_range: list[float] | None = None
    """TD targets are clamped into [lo, hi]; [] leaves them unclamped. None: [0, 1] on our tasks
    with a sparse success reward that ends the episode (every chunk's return lies there),
    unclamped otherwise; the trainer records what it chose. Without the clamp na's action
    critic starts at its random initial outputs (-0.5 to -0.9 on PickCube) and they take 5-7k
    env steps to fade. On PickCube's 38% base (README) the clamp took na's last checkpoints
    from 93% to 97% (3 and 5 seeds); for sac it is neutral (98% to 100% over 3 seeds, 98% to
    94% on the pipeline's one), so both variants share the rule."""

    def __post_init__(self) -> None:
        if self.variant not in ("sac", "na"):
            raise ValueError(f"dsrl variant must be sac or na, got {self.variant!r}")

    def updates_per_chunk(self) -> int:
        if self.utd is not None:
            return self.utd
        return 8 if self.variant == "sac" else 2

    def as_sac(self) -> SACConfig:
        """The SAC config of ``variant=sac`` (same settings, acting in noise space)."""
        shared = [f.name for f in fields(SACConfig) if f.name not in ("name", "utd")]
        values = {k: getattr(self, k) for k in shared}
        return SACConfig(**values, utd=self.updates_per_chunk())


class DSRLNA(nn.Module):
    def __init__(
        self,
        cfg: DSRLConfig,
        obs_shapes: dict[str, tuple[int, ...]],
        latent_dim: int,
        base: BasePolicy,
    ):
        super().__init__()
        if not hasattr(base, "sample"):
            raise ValueError("DSRL-NA steers a diffusion base policy")
        self.cfg, self.action_dim = cfg, latent_dim
        self._base = [base]  # a list keeps it out of parameters(), state_dict() and .to()
        self.encoder = ObsEncoder(obs_shapes, cfg.image_feature_dim)
        width, act = self.encoder.dim + latent_dim, cfg.activation
        self.actor = TanhGaussianActor(self.encoder.dim, latent_dim, cfg.hidden, activation=act)
        check_critic_subset(cfg.critic_subset, cfg.num_critics)
        check_target_range(cfg.q_target_range)
        self.q_action = CriticEnsemble(cfg.num_critics, width, cfg.hidden, activation=act)
        self.q_noise = CriticEnsemble(cfg.num_critics, width, cfg.hidden, activation=act)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_q_action = copy.deepcopy(self.q_action).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(cfg.init_temperature)).log())
        groups = {
            "action_critic": [*self.q_action.parameters(), *self.encoder.encoders.parameters()],
            "noise_critic": [*self.q_noise.parameters()],
            "actor": [*self.actor.parameters()],
            "temperature": [self.log_alpha],
        }
        self.optimizer = torch.optim.Adam(
            [{"params": v, "name": k} for k, v in groups.items()], lr=cfg.lr, fused=True
        )
        self.train_step = FastStep(self.losses, self.optimizer, cfg)

    @property
    def base(self) -> BasePolicy:
        return self._base[0]

    @torch.no_grad()
    def executed(self, obs: dict[str, torch.Tensor], latent: torch.Tensor) -> torch.Tensor:
        """pi_dp(s, magnitude * u): the executed chunk, flattened (B, L)."""
        base_obs = {k: obs[k].unsqueeze(1) for k in self.base.obs_shapes}
        chunk = self.base.predict_action(base_obs, noise=latent * self.cfg.action_magnitude)
        return chunk.flatten(1)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        action, _ = self.actor(self.encoder(obs), deterministic)
        return action

    def episode_done(self, done: torch.Tensor) -> None:
        """Nothing per episode."""

    @property
    def updates_per_learn(self) -> int:
        """Gradient updates in one ``learn`` call."""
        return self.cfg.updates_per_chunk()

    def learn(self, sample) -> dict[str, torch.Tensor]:
        metrics = {}
        for _ in range(self.cfg.updates_per_chunk()):
            metrics = self.update(sample(self.cfg.batch_size))
        return metrics

    def update(self, batch: dict) -> dict[str, torch.Tensor]:
        metrics = self.train_step(*loss_inputs(batch))
        self._soft_update()
        return metrics

    def losses(
        self,
        obs: dict[str, torch.Tensor],
        latent: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
        next_obs: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Action-critic, noise-critic, actor and temperature losses, summed; each reaches only
        its own parameters. latent (B, L) in [-1, 1], reward and discount (B,)."""
        cfg = self.cfg
        alpha = self.log_alpha.exp().detach()
        # 1. action critic on executed chunks
        with torch.no_grad():
            next_latent, next_log_prob = self.actor(self.encoder(next_obs))
            subset = random_subset(cfg.num_critics, cfg.critic_subset, alpha.device)
            q_next = self.target_q_action(
                self.target_encoder(next_obs), self.executed(next_obs, next_latent), subset
            )[..., 0]
            executed = self.executed(obs, latent)
        features = self.encoder(obs)
        q_pred = self.q_action(features, executed)[..., 0]
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
        # 2. noise critic distilled toward the action critic
        features = features.detach()
        distill = self.distill_loss(features, obs)
        # 3. latent actor on the noise critic, and the temperature
        pi_latent, log_prob = self.actor(features)
        q_pi = call_detached(self.q_noise, features, pi_latent)[..., 0]
        actor_loss, actor_metrics = sac_actor_loss(q_pi, log_prob, alpha)
        t_loss, t_metrics = temperature_loss(self.log_alpha, log_prob, cfg.target_entropy)
        metrics = {**metrics, **actor_metrics, **t_metrics, "loss/noise_critic": distill.detach()}
        return loss + distill + actor_loss + t_loss, metrics

    def distill_loss(self, features: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE of the noise critic to Q^A(s, pi_dp(s, w)) for fresh w ~ N(0, I), the target
        detached; features (B, F) detached from the encoder."""
        with torch.no_grad():
            w = torch.randn(len(features), self.action_dim, device=features.device)
            u = w / self.cfg.action_magnitude  # latent units, as the actor's actions
            target = self.q_action(features, self.executed(obs, u))[..., 0].mean(0)
        q_w = self.q_noise(features, u)[..., 0]
        return F.mse_loss(q_w, target.expand_as(q_w))

    def _soft_update(self) -> None:
        soft_update([(self.target_q_action, self.q_action)], self.cfg.tau)
        update_target_encoder(self.target_encoder, self.encoder, self.cfg.tau)
