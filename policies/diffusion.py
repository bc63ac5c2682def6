"""Diffusion policy: epsilon prediction, cosine noise schedule, DDPM training and a DDIM (eta = 0)
sampler that maps a given initial noise deterministically to an action chunk, as DSRL needs.

The denoiser is an MLP over (noisy chunk, timestep embedding, observation features), the
low-dimensional variant DSRL steers. Conditioning covers state, pixels (conv encoder trained end
to end, DrQ shifts) or both. Actions are normalised to [-1, 1] by the env's bounds and every
x0 estimate is clamped to them.

Shapes: chunk x (B, Ta, A); noise w (B, Ta, A) or flattened (B, Ta * A).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.policies.base import BasePolicy, ChunkPolicyConfig
from robot_rl.rl.networks import mlp, mlp_fp32_out


@dataclass
class DiffusionPolicyConfig(ChunkPolicyConfig):
    name: str = "diffusion"
    """Policy type (DSRL's latent is action_horizon x action_dim)."""
    time_embed_dim: int = 64
    """Sinusoidal timestep embedding size."""
    train_steps: int = 100
    """Diffusion steps of the DDPM training chain."""
    inference_steps: int = 10
    """DDIM steps at inference."""


def cosine_alpha_bars(steps: int, s: float = 0.008) -> torch.Tensor:
    """Cumulative signal fractions alpha_bar_t, t = 0..steps-1 (Nichol & Dhariwal), with each
    beta clipped at 0.999."""
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
    f = torch.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer steps -> (B, dim) sinusoidal features."""
    freqs = torch.exp(-math.log(10_000) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class DiffusionPolicy(BasePolicy):
    kind = "diffusion"

    def __init__(self, cfg: DiffusionPolicyConfig, obs_shapes, action_dim: int, **bounds):
        super().__init__(cfg, obs_shapes, action_dim, **bounds)
        self.chunk_dim = cfg.action_horizon * action_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.time_embed_dim, cfg.time_embed_dim * 2),
            nn.Mish(),
            nn.Linear(cfg.time_embed_dim * 2, cfg.time_embed_dim),
        )
        in_dim = self.chunk_dim + cfg.time_embed_dim + self.cond_dim
        self.denoiser = mlp(in_dim, cfg.hidden, self.chunk_dim)
        self.register_buffer("alpha_bars", cosine_alpha_bars(cfg.train_steps))
        # DDIM visits train_steps-1 .. 0 in inference_steps roughly even strides
        steps = torch.linspace(cfg.train_steps - 1, 0, cfg.inference_steps).round().long()
        self.register_buffer("ddim_steps", steps)
        self.ddim_schedule = tuple(steps.tolist())  # Python ints: no device sync when sampling

    def epsilon(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted noise for flattened chunks x (B, Ta * A) at steps t (B,)."""
        temb = self.time_mlp(timestep_embedding(t, self.cfg.time_embed_dim))
        return mlp_fp32_out(self.denoiser, torch.cat([x, temb, cond], dim=-1))

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0 = self.normalize_action(batch["action"]).flatten(1)
        cond = self.condition(batch["obs"], augment=self.cfg.augment)
        t = torch.randint(self.cfg.train_steps, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        ab = self.alpha_bars[t][:, None]
        loss = F.mse_loss(self.epsilon(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t, cond), eps)
        return loss, {"loss/bc": loss.detach()}

    def sample(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """DDIM with eta = 0 from the given initial noise (B, Ta * A) -> normalised chunk, every
        x0 estimate clamped to [-1, 1]. Deterministic: the same noise gives the same chunk."""
        x = noise
        steps = self.ddim_schedule
        for i, t in enumerate(steps):
            ab = self.alpha_bars[t]
            ab_prev = self.alpha_bars[steps[i + 1]] if i + 1 < len(steps) else ab.new_tensor(1.0)
            eps = self.epsilon(x, torch.full((x.shape[0],), t, device=x.device), cond)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1.0, 1.0)
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x

    @torch.no_grad()
    def predict_action(self, obs, noise=None, generator=None, deterministic: bool = False):
        """Action chunk (B, Ta, A). ``noise`` (B, Ta, A) or (B, Ta * A) is the initial latent;
        without it one is drawn from N(0, I) (with ``generator`` if given)."""
        cond = self.condition(obs)
        if noise is None:
            shape = (cond.shape[0], self.chunk_dim)
            noise = torch.randn(shape, device=cond.device, generator=generator)
        x = self.sample(cond, noise.reshape(cond.shape[0], self.chunk_dim))
        return self.unnormalize_action(x.unflatten(-1, (self.action_horizon, self.action_dim)))
