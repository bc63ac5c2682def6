"""Any gymnasium env with a Box action space as a batched env: what its observations become, and
what is refused with a clear error."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_rl.rl.envs import make_env


class BoxEnv(gym.Env):
    """Observations of the given space, whose values count the steps; ends after 3 steps."""

    def __init__(self, observation_space, action_space=None):
        self.observation_space = observation_space
        self.action_space = action_space or gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.t = 0

    def _obs(self):
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict):
            return {k: np.full(s.shape, self.t, s.dtype) for k, s in space.spaces.items()}
        return np.arange(np.prod(space.shape), dtype=space.dtype).reshape(space.shape) + self.t

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, self.t >= 3, {}


def register(name, observation_space, action_space=None):
    gym.register(name, entry_point=lambda: BoxEnv(observation_space, action_space))
    return f"gym:{name}"


def test_a_matrix_observation_is_flattened_into_one_vector():
    task = register("Matrix-v0", gym.spaces.Box(0.0, 100.0, (3, 4), np.float64))
    env = make_env(task, 2)
    assert env.single_observation_space["state"].shape == (12,)
    obs, _ = env.reset(seed=0)
    assert obs["state"].shape == (2, 12) and obs["state"].dtype == torch.float32
    torch.testing.assert_close(obs["state"][0], torch.arange(12.0))
    obs, *_ = env.step(torch.zeros(2, 2))
    torch.testing.assert_close(obs["state"][1], torch.arange(12.0) + 1)


def test_square_rgb_uint8_observations_stay_images_beside_vectors():
    space = gym.spaces.Dict(
        {
            "camera": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
            "joints": gym.spaces.Box(0.0, 100.0, (2, 3), np.float32),
        }
    )
    env = make_env(register("Camera-v0", space), 1)
    obs, _ = env.reset(seed=0)
    assert obs["camera"].shape == (1, 16, 16, 3) and obs["camera"].dtype == torch.uint8
    assert obs["joints"].shape == (1, 6) and obs["joints"].dtype == torch.float32


@pytest.mark.parametrize("shape", [(16, 16, 4), (3, 16, 16), (16, 12, 3)])
def test_images_the_encoder_cannot_take_are_refused(shape):
    task = register(f"Image{'x'.join(map(str, shape))}-v0", gym.spaces.Box(0, 255, shape, np.uint8))
    with pytest.raises(ValueError, match=r"square RGB images, \(S, S, 3\)"):
        make_env(task, 1)


def test_unbounded_actions_are_refused():
    action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    task = register("Unbounded-v0", gym.spaces.Box(-1.0, 1.0, (3,), np.float32), action_space)
    with pytest.raises(ValueError, match="unbounded actions"):
        make_env(task, 1)


def test_camera_obs_modes_and_unknown_settings_are_refused_for_gym_envs():
    with pytest.raises(ValueError, match="obs=pixels picks the cameras of our tasks"):
        make_env("gym:Pendulum-v1", 1, obs="pixels")
    with pytest.raises(ValueError, match="does not take the settings"):
        make_env("gym:Pendulum-v1", 1, overrides={"bogus": 1})
    with pytest.raises(ValueError, match="gym:NoSuchEnv-v0: .*doesn't exist"):
        make_env("gym:NoSuchEnv-v0", 1)
