"""Run a chunking base policy in N batched envs: per-env observation history and open-loop
action queue, both cleared at every episode start. Acts like a learner (``act`` and
``episode_done``), so the trainer's ``evaluate`` and the fine-tuning wrappers use it as is."""

from __future__ import annotations

import torch

from robot_rl.policies.base import BasePolicy


class ChunkRunner:
    def __init__(self, policy: BasePolicy, num_envs: int, seed: int | None = None):
        self.policy, self.num_envs = policy, num_envs
        device = policy.action_low.device
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(seed)
        self.history: dict[str, torch.Tensor] | None = None  # (N, To, ...)
        self.queue = torch.zeros(num_envs, policy.action_horizon, policy.action_dim, device=device)
        self.left = torch.zeros(num_envs, dtype=torch.long, device=device)  # actions queued
        self.fresh = torch.ones(num_envs, dtype=torch.bool, device=device)  # episode starts

    def episode_done(self, done: torch.Tensor) -> None:
        done = done.to(self.left.device)
        self.left[done] = 0
        self.fresh |= done

    def pushed(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each env's history with ``obs`` appended (a fresh episode repeats it To times)."""
        if self.history is None:
            to = self.policy.obs_horizon
            self.history = {k: v.unsqueeze(1).repeat_interleave(to, 1) for k, v in obs.items()}
        out = {}
        for k, v in obs.items():
            rolled = torch.cat([self.history[k][:, 1:], v.unsqueeze(1)], dim=1)
            mask = self.fresh.view(-1, *[1] * (rolled.dim() - 1))
            out[k] = torch.where(mask, v.unsqueeze(1).expand_as(rolled), rolled)
        return out

    def observe(self, obs: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
        """Push the newest observations into the history of the envs in ``rows`` (N,) bool."""
        self.history = where_rows(rows, self.pushed(obs), self.history)
        self.fresh &= ~rows

    @torch.no_grad()
    def next_action_after(
        self, obs: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The action each env would take next if it saw ``obs``, (N, A), without changing any
        state: the queued one, or a fresh prediction (drawn with ``generator``) where the queue
        is empty. Used to bootstrap from an episode's final observation."""
        action = self.peek().clone()
        rows = torch.nonzero(self.left == 0).flatten()
        if len(rows):
            history = {k: v[rows] for k, v in self.pushed(obs).items()}
            action[rows] = self.policy.predict_action(history, generator=generator)[:, 0]
        return action

    @torch.no_grad()
    def refill(self, need: torch.Tensor, noise: torch.Tensor | None = None) -> None:
        """Predict new chunks for the envs in ``need`` (N,) bool."""
        rows = torch.nonzero(need).flatten()
        if len(rows) == 0:
            return
        obs = {k: v[rows] for k, v in self.history.items()}
        chunk = self.policy.predict_action(
            obs, noise=None if noise is None else noise[rows], generator=self.generator
        )
        self.queue[rows] = chunk
        self.left[rows] = self.policy.action_horizon

    def peek(self) -> torch.Tensor:
        """The action each env executes next, (N, A)."""
        index = (self.policy.action_horizon - self.left).clamp(max=self.policy.action_horizon - 1)
        return self.queue[torch.arange(self.num_envs, device=index.device), index]

    @torch.no_grad()
    def act(
        self,
        obs: dict[str, torch.Tensor],
        deterministic: bool = True,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next action per env, (N, A): pops the queue, predicting where it ran out. With
        ``rows`` (N,) bool only those envs observe and advance; the others' entries are their
        queued next action."""
        rows = torch.ones_like(self.fresh) if rows is None else rows.to(self.fresh.device)
        self.observe(obs, rows)
        self.refill((self.left == 0) & rows)
        action = self.peek()
        self.left -= rows.long()
        return action


def where_rows(mask: torch.Tensor, new: dict, old: dict) -> dict:
    """Per env: ``new`` where ``mask`` (N,) bool, else ``old``; dicts of (N, ...) tensors."""
    return {k: torch.where(mask.view(-1, *[1] * (v.dim() - 1)), v, old[k]) for k, v in new.items()}
