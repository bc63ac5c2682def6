"""Losses as pure functions: ``(inputs, networks, settings) -> (loss, metrics)``.

Batches come from ``replay.ReplayBuffer.sample``: ``reward`` is the n-step discounted sum and
``discount`` is gamma^n_eff, or 0 after a true termination (truncation bootstraps).
Shapes: B batch, E critics, K atoms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def random_subset(members: int, subset: int, device=None, generator=None) -> torch.Tensor:
    """Indices of ``subset`` distinct ensemble members drawn at random (REDQ)."""
    return torch.randperm(members, device=device, generator=generator)[:subset]


def check_critic_subset(subset: int, members: int) -> None:
    """A config check: the target's random subset must fit in the ensemble."""
    if not 1 <= subset <= members:
        raise ValueError(f"critic_subset must be in [1, {members}], got {subset}")


def check_target_range(target_range) -> None:
    """A config check: a TD target range is [lo, hi] with lo <= hi, or empty (no clamp)."""
    if target_range and (len(target_range) != 2 or target_range[0] > target_range[1]):
        raise ValueError(f"q_target_range is [lo, hi] or [], not {list(target_range)}")


def sac_critic_loss(
    q_pred: torch.Tensor,
    q_next: torch.Tensor,
    next_log_prob: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    alpha: torch.Tensor,
    entropy_backup: bool,
    target_range: Sequence[float] = (),
) -> tuple[torch.Tensor, dict]:
    """MSE of every critic to r + discount * (min over the target critics - alpha log pi).
    q_pred (E, B); q_next (M, B): the random subset of target critics, already drawn (only those
    are evaluated); others (B,). A ``target_range`` (lo, hi) clamps the target into the returns
    the task can pay (ResFiT: [0, 1] for a success reward that ends the episode)."""
    with torch.no_grad():
        v_next = q_next.min(0).values
        if entropy_backup:
            v_next = v_next - alpha * next_log_prob
        target = reward + discount * v_next
        if target_range:
            target = target.clamp(*target_range)
    loss = F.mse_loss(q_pred, target.expand_as(q_pred), reduction="none").mean(1).sum()
    return loss, {
        "loss/critic": loss.detach(),
        "q/mean": q_pred.detach().mean(),
        "q/target": target.mean(),
    }


def policy_conservative_penalty(
    q_policy: torch.Tensor, q_data: torch.Tensor, weight: float
) -> tuple[torch.Tensor, dict]:
    """CQL's regulariser (Kumar et al., 2020) with the current policy as the distribution it
    pushes down: ``weight`` * sum over critics of mean_B [Q(s, pi(s)) - Q(s, a)]; q_policy,
    q_data (E, B). Where the policy acts like the data the two terms cancel; where it leaves
    the data, the critics there are lowered until transitions from there confirm them, so an
    actor cannot climb a Q value the critics only extrapolate."""
    gap = (q_policy - q_data).mean(1)
    return weight * gap.sum(), {"q/policy_minus_data": gap.detach().mean()}


def sac_actor_loss(
    q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """alpha log pi - mean over critics of Q(s, pi(s)); q_pi (E, B)."""
    loss = (alpha.detach() * log_prob - q_pi.mean(0)).mean()
    return loss, {"loss/actor": loss.detach(), "entropy": -log_prob.detach().mean()}


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> tuple[torch.Tensor, dict]:
    loss = -(log_alpha * (log_prob.detach() + target_entropy)).mean()
    return loss, {"loss/temperature": loss.detach(), "temperature": log_alpha.detach().exp()}


def c51_project(
    next_probs: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    v_min: float,
    v_max: float,
) -> torch.Tensor:
    """Project the distribution of r + discount * Z onto the fixed support (B, K) -> (B, K).

    Mass that lands exactly on an atom stays whole on that atom, so every row sums to 1.
    """
    batch, atoms = next_probs.shape
    support = torch.linspace(v_min, v_max, atoms, device=next_probs.device)
    delta = (v_max - v_min) / (atoms - 1)
    tz = (reward[:, None] + discount[:, None] * support[None]).clamp(v_min, v_max)
    # in float32, (v_max - v_min) / delta can round past atoms - 1 (e.g. -10..200 at 51 atoms),
    # which would index one atom beyond the support
    b = ((tz - v_min) / delta).clamp(0, atoms - 1)
    lower, upper = b.floor().long(), b.ceil().long()
    exact = lower == upper
    lower = torch.where(exact & (upper > 0), lower - 1, lower)
    upper = torch.where(exact & (lower == upper) & (lower < atoms - 1), upper + 1, upper)
    out = torch.zeros_like(next_probs)
    out.scatter_add_(1, lower, next_probs * (upper.float() - b))
    out.scatter_add_(1, upper, next_probs * (b - lower.float()))
    return out


def expected_value(logits: torch.Tensor, v_min: float, v_max: float) -> torch.Tensor:
    """E[Z] of categorical logits (..., K) -> (...)."""
    support = torch.linspace(v_min, v_max, logits.shape[-1], device=logits.device)
    return (logits.softmax(-1) * support).sum(-1)


def distributional_cdq_loss(
    logits: torch.Tensor,
    next_logits: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    v_min: float,
    v_max: float,
) -> tuple[torch.Tensor, dict]:
    """FastTD3 critic: per sample, project the target head with the lower expected value and
    train both heads on it by cross-entropy. logits, next_logits: (2, B, K)."""
    target = cdq_target(next_logits, reward, discount, v_min, v_max)
    loss = -(target[None] * logits.log_softmax(-1)).sum(-1).mean(1).sum()
    q = expected_value(logits.detach(), v_min, v_max)
    return loss, {"loss/critic": loss.detach(), "q/mean": q.mean(), "q/max": q.max()}


@torch.no_grad()
def cdq_target(
    next_logits: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    v_min: float,
    v_max: float,
) -> torch.Tensor:
    """Projected target distribution of the head with the lower E[Q] per sample, (B, K)."""
    pick = expected_value(next_logits, v_min, v_max).argmin(0)  # (B,)
    probs = next_logits.softmax(-1)
    chosen = probs[pick, torch.arange(probs.shape[1], device=probs.device)]
    return c51_project(chosen, reward, discount, v_min, v_max)


def deterministic_actor_loss(
    q_pi_logits: torch.Tensor,
    v_min: float,
    v_max: float,
    preactivation: torch.Tensor | None = None,
    preactivation_l2: float = 0.0,
    preactivation_bound: float = 0.0,
) -> tuple[torch.Tensor, dict]:
    """-min over heads of E[Q(s, pi(s))]; q_pi_logits (2, B, K). With the actor's output before
    its tanh, ``preactivation`` (B, A), adds ``preactivation_l2`` * mean_B sum_A
    max(|preactivation| - ``preactivation_bound``, 0)^2: in tanh's flat tails dQ/da no longer
    reaches the actor's weights (at 6, tanh' is 2.5e-5), so a saturated action stays saturated
    whatever the critic learns; the penalty keeps it out. Inside the bound it costs nothing."""
    q = expected_value(q_pi_logits, v_min, v_max).min(0).values
    loss = -q.mean()
    metrics = {"loss/actor": loss.detach()}
    if preactivation is not None and preactivation_l2 > 0:
        excess = (preactivation.abs() - preactivation_bound).clamp(min=0.0)
        penalty = preactivation_l2 * excess.square().sum(-1).mean()
        loss = loss + penalty
        metrics["loss/preactivation_l2"] = penalty.detach()
    return loss, metrics


def ensemble_actor_loss(
    q_pi: torch.Tensor,
    residual: torch.Tensor | None = None,
    l2_weight: float = 0.0,
    pessimism: float = 0.0,
) -> tuple[torch.Tensor, dict]:
    """-mean over batch of [mean_E Q(s, pi(s)) - pessimism * std_E Q(s, pi(s))]; q_pi (E, B)
    (the ResFiT/TD3 actor at ``pessimism`` 0). The spread of the ensemble is large where the
    critics have seen no data, so a positive ``pessimism`` keeps the actor from chasing Q
    values the critics merely extrapolate. With a ``residual`` (B, A) in action units, adds
    ``l2_weight`` * mean_B sum_A residual^2, ResFiT's pull toward the base action."""
    value = q_pi.mean(0)
    if pessimism > 0:
        value = value - pessimism * q_pi.std(0)
    loss = -value.mean()
    metrics = {"loss/actor": loss.detach(), "q/ensemble_std": q_pi.detach().std(0).mean()}
    if residual is not None and l2_weight > 0:
        penalty = l2_weight * residual.square().sum(-1).mean()
        loss = loss + penalty
        metrics["loss/residual_l2"] = penalty.detach()
    return loss, metrics
