"""Networks shared by the learners. Shapes: B batch, E ensemble members, D features."""

from __future__ import annotations

import math
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.rl.acceleration import full_precision

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return name


def mlp(
    in_dim: int,
    hidden: list[int],
    out_dim: int,
    layer_norm: bool = True,
    activation: str = "relu",
) -> nn.Sequential:
    """Linear -> LayerNorm -> activation per hidden layer, then a linear output layer."""
    act = ACTIVATIONS[check_activation(activation)]
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h)] + ([nn.LayerNorm(h)] if layer_norm else []) + [act()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def mlp_fp32_out(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run an ``mlp``; under bf16 autocast its output layer still runs in fp32."""
    for layer in islice(net, len(net) - 1):
        x = layer(x)
    with full_precision(x):
        return net[-1](x.float())


def call_detached(module: nn.Module, *args) -> torch.Tensor:
    """``module(*args)`` with its parameters cut from the graph: gradients reach the inputs only
    (an actor loss through a critic leaves the critic's gradients untouched)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


class EnsembleLinear(nn.Module):
    """E independent linear layers evaluated as one batched matmul: (E, B, I) -> (E, B, O)."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``members`` (M,) evaluates only those members: x is then (M, B, I)."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with each member's own gain and bias: (E, B, D) -> (E, B, D)."""

    def __init__(self, members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        w, b = (
            (self.weight, self.bias)
            if members is None
            else (self.weight[members], self.bias[members])
        )
        return torch.addcmul(b, F.layer_norm(x, x.shape[-1:]), w)


class CriticEnsemble(nn.Module):
    """E critics Q(s, a) with LayerNorm as one module. Output (E, B, atoms); atoms = 1 for a
    scalar critic, or the C51 logits."""

    def __init__(
        self,
        members: int,
        in_dim: int,
        hidden: list[int],
        atoms: int = 1,
        activation: str = "relu",
    ):
        super().__init__()
        self.members, self.atoms = members, atoms
        self.activation = {"relu": F.relu, "tanh": torch.tanh}[check_activation(activation)]
        dims = [in_dim, *hidden]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in pairs)
        self.norms = nn.ModuleList(EnsembleLayerNorm(members, h) for h in hidden)
        self.head = EnsembleLinear(members, dims[-1], atoms)

    def forward(
        self, features: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, F), (B, A) -> (E, B, atoms), or (M, B, atoms) for a subset ``members``."""
        x = torch.cat([features, action], dim=-1)
        count = self.members if members is None else len(members)
        x = x.unsqueeze(0).expand(count, *x.shape)
        for layer, norm in zip(self.layers, self.norms, strict=True):
            x = self.activation(norm(layer(x, members), members))
        with full_precision(x):
            return self.head(x.float(), members)


class TanhGaussianActor(nn.Module):
    """pi(a|s): tanh-squashed Gaussian; returns action in [-1, 1] and its log-probability."""

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden: list[int],
        log_std_range: tuple[float, float] = (-10.0, 2.0),
        activation: str = "relu",
    ):
        super().__init__()
        self.net = mlp(in_dim, hidden, 2 * action_dim, activation=activation)
        self.log_std_range = log_std_range

    def forward(self, features: torch.Tensor, deterministic: bool = False):
        mean, log_std = mlp_fp32_out(self.net, features).chunk(2, dim=-1)
        log_std = log_std.clamp(*self.log_std_range)  # starts near 0: std ~1, broad exploration
        if deterministic:
            return torch.tanh(mean), None
        std = log_std.exp()
        pre = mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((pre - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(
            -1
        )
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), numerically stable
        log_prob -= (2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))).sum(-1)
        return torch.tanh(pre), log_prob


class DeterministicActor(nn.Module):
    """a = tanh(MLP(s)) with a small final layer (FastTD3: std 0.01)."""

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden: list[int],
        init_std: float = 0.01,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.net = mlp(in_dim, hidden, action_dim, layer_norm=layer_norm)
        last = self.net[-1]
        nn.init.normal_(last.weight, std=init_std)
        nn.init.zeros_(last.bias)

    def preactivation(self, features: torch.Tensor) -> torch.Tensor:
        """The action before its tanh, (B, A)."""
        return mlp_fp32_out(self.net, features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.preactivation(features))


class ConvEncoder(nn.Module):
    """DrQ-style encoder for (B, H, W, 3) uint8 images -> (B, feature_dim)."""

    def __init__(self, image_size: int = 128, channels: int = 32, feature_dim: int = 64):
        super().__init__()
        self.image_shape, self.feature_dim = (image_size, image_size, 3), feature_dim
        self.convs = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, 3, image_size, image_size)).numel()
        self.proj = nn.Sequential(
            nn.Linear(flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh()
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return self.proj(self.convs(x).flatten(1))


def random_shift(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """DrQ augmentation: pad by replication and crop back at a random integer offset in
    [0, 2 pad] per image, as one gather (replicate padding = indices clamped to the image).
    (B, H, W, C), any dtype -> same shape and dtype."""
    b, h, w, _ = images.shape
    offset = torch.randint(0, 2 * pad + 1, (2, b, 1), device=images.device) - pad
    rows = (torch.arange(h, device=images.device) + offset[0]).clamp(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=images.device) + offset[1]).clamp(0, w - 1)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return images[batch, rows[:, :, None], cols[:, None, :]]


class RunningNorm(nn.Module):
    """Running mean/variance observation normaliser (parallel Welford); saved with the model."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(eps))
        self.clip = clip

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, self.mean.shape[0]).float()
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0, unbiased=False)
        delta = mean - self.mean
        total = self.count + n
        # in place: a captured CUDA graph reads these buffers at fixed addresses
        self.mean += delta * n / total
        self.var.copy_(
            (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        )
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-self.clip, self.clip)


class ObsEncoder(nn.Module):
    """Dict observation -> features: normalised vectors, and a conv encoder per camera.

    Vector keys are concatenated in sorted order; image keys are (B, H, W, 3) uint8.
    """

    def __init__(
        self,
        obs_shapes: dict[str, tuple[int, ...]],
        image_feature_dim: int = 64,
        normalize: bool = True,
    ):
        super().__init__()
        self.vector_keys = sorted(k for k, s in obs_shapes.items() if len(s) == 1)
        self.image_keys = sorted(k for k, s in obs_shapes.items() if len(s) == 3)
        vec_dim = sum(obs_shapes[k][0] for k in self.vector_keys)
        self.norm = RunningNorm(vec_dim) if normalize and vec_dim else None
        self.encoders = nn.ModuleDict(
            {
                k: ConvEncoder(obs_shapes[k][0], feature_dim=image_feature_dim)
                for k in self.image_keys
            }
        )
        self.dim = vec_dim + image_feature_dim * len(self.image_keys)

    def vector(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([obs[k].float() for k in self.vector_keys], dim=-1)

    def update_norm(self, obs: dict[str, torch.Tensor]) -> None:
        if self.norm is not None:
            self.norm.update(self.vector(obs))

    def forward(self, obs: dict[str, torch.Tensor], detach_images: bool = False) -> torch.Tensor:
        parts = []
        if self.vector_keys:
            v = self.vector(obs)
            parts.append(self.norm(v) if self.norm is not None else v)
        for k in self.image_keys:
            f = self.encoders[k](obs[k])
            parts.append(f.detach() if detach_images else f)
        return torch.cat(parts, dim=-1)


@torch.no_grad()
def soft_update(pairs: list[tuple[nn.Module, nn.Module]], tau: float) -> None:
    """target <- (1 - tau) target + tau source for each (target, source) pair of modules."""
    for target, source in pairs:
        t, s = list(target.parameters()), list(source.parameters())
        if t:
            torch._foreach_lerp_(t, s, tau)


@torch.no_grad()
def update_target_encoder(target: ObsEncoder, source: ObsEncoder, tau: float) -> None:
    """Soft-update the image encoders; copy the observation statistics outright."""
    soft_update([(target.encoders, source.encoders)], tau)
    if source.norm is not None:
        target.norm.load_state_dict(source.norm.state_dict())
