"""Camera frames through a frozen, pretrained conv encoder, once per frame.

SERL's answer to pixel RL on a small computer is a frozen pretrained image encoder. We download
no weights, so the encoder comes from a pixel BC policy trained on the same demos
(``robot-rl bc`` on a pixel demo store). ``FrozenFeatureEnv`` replaces each camera key
``k`` (N, H, W, 3) uint8 with ``k_features`` (N, F) float32, computed once when the frame is
seen. The replay then holds vectors, and the learner trains at state speed: one pixel update
through the trainable encoder costs ~1.7 s on one CPU thread, one here costs what a state update
costs. The price is that the critic cannot shape the encoder and DrQ shifts do not apply.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from robot_rl.batched_env import BatchedEnv
from robot_rl.rl.networks import ObsEncoder

FEATURES = "_features"
ENCODE_BATCH = 512  # frames per encoder call when relabelling demos


def image_keys(space: gym.spaces.Dict) -> list[str]:
    return sorted(k for k, s in space.spaces.items() if len(s.shape) == 3)


def load_image_encoder(directory: str, device: str | torch.device = "cpu") -> ObsEncoder:
    """The observation encoder of a saved base policy, frozen; refuses one without cameras."""
    from robot_rl.policies import load_policy

    encoder = load_policy(directory, device).encoder
    if not encoder.image_keys:
        raise ValueError(
            f"{directory} is a state policy (observations {sorted(encoder.vector_keys)}); "
            "image_encoder= needs one trained on camera images"
        )
    return encoder


class FrozenFeatureEnv(BatchedEnv):
    """``env`` with its camera images replaced by frozen encoder features (see the module)."""

    def __init__(self, env: BatchedEnv, encoder: ObsEncoder):
        self.env, self.encoder = env, encoder.eval().requires_grad_(False)
        space = env.single_observation_space
        self.image_keys = image_keys(space)
        if not self.image_keys:
            raise ValueError("image_encoder= needs camera observations: train with obs=pixels")
        for k in self.image_keys:
            trained = encoder.encoders[k].image_shape if k in encoder.encoders else None
            if trained != tuple(space[k].shape):
                raise ValueError(
                    f"the image encoder was trained on cameras {encoder.image_keys}; the env's "
                    f"{k!r} is {tuple(space[k].shape)}, which it "
                    + ("was not trained on" if trained is None else f"saw as {trained}")
                )
        spaces = {k: s for k, s in space.spaces.items() if k not in self.image_keys}
        for k in self.image_keys:
            dim = encoder.encoders[k].feature_dim
            spaces[k + FEATURES] = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.single_observation_space = gym.spaces.Dict(spaces)
        self.single_action_space = env.single_action_space
        self.num_envs, self.device = env.num_envs, env.device

    def __getattr__(self, name: str):  # runtime, random_action, base_only_dims, ...
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    @torch.no_grad()
    def features(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Observations (N, ...) with each camera replaced by its features (N, F)."""
        dev = next(self.encoder.parameters()).device
        out = {k: v for k, v in obs.items() if k not in self.image_keys}
        for k in self.image_keys:
            frames = obs[k].to(dev)
            encode = self.encoder.encoders[k]
            f = torch.cat([encode(part) for part in frames.split(ENCODE_BATCH)])
            out[k + FEATURES] = f.float().to(obs[k].device)
        return out

    def reset(self, seed: int | None = None):
        obs, info = self.env.reset(seed=seed)
        return self.features(obs), info

    def reset_envs(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features(self.env.reset_envs(mask))

    def step(self, action: torch.Tensor, autoreset: bool = True):
        obs, reward, terminated, truncated, info = self.env.step(action, autoreset)
        obs = self.features(obs)
        final = dict(obs)  # a row that did not end has final_obs == obs: encode the ended only
        done = terminated | truncated
        if bool(done.any()):
            ended = self.features({k: v[done] for k, v in info["final_obs"].items()})
            final = {k: v.index_put((done,), ended[k]) for k, v in obs.items()}
        return obs, reward, terminated, truncated, {**info, "final_obs": final}

    def relabel(self, steps: dict, final: dict) -> tuple[dict, dict]:
        """A demo episode as this env shows it: the inner env's relabelling first (e.g. the
        residual's base actions, which need the images), then frames to features."""
        inner = getattr(self.env, "relabel", None)
        if inner is not None:
            steps, final = inner(steps, final)
        return self.features(steps), {
            k: v[0] for k, v in self.features({k: v[None] for k, v in final.items()}).items()
        }

    def close(self) -> None:
        self.env.close()
