"""Every env resets and steps in every obs mode; API semantics of single and batched envs."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import robot_rl.sim  # noqa: F401  (registers the envs)
from robot_rl.control.rotations import quat_conjugate, quat_multiply, quat_to_axis_angle
from robot_rl.sim.batched import MujocoBatchedEnv
from robot_rl.sim.registry import ENV_IDS
from robot_rl.sim.tasks.base import GRIPPER_MAX_WIDTH, TOP_DOWN_QUAT
from robot_rl.sim.tasks.peg_insert import FINE_SCALE

MODES = ("state", "pixels", "state+pixels")


@pytest.mark.parametrize("task", sorted(ENV_IDS))
@pytest.mark.parametrize("obs_mode", MODES)
def test_every_env_resets_and_steps(task, obs_mode):
    env = gym.make(ENV_IDS[task], obs_mode=obs_mode)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        for key, value in obs.items():
            assert value.shape == env.observation_space[key].shape
            assert value.dtype == env.observation_space[key].dtype
            assert np.all(np.isfinite(value))
        assert np.isfinite(reward) and isinstance(terminated, bool) and isinstance(truncated, bool)
    if "pixels" in obs_mode:
        assert obs["front"].shape == (128, 128, 3) and obs["front"].std() > 5
        assert obs["wrist"].shape == (128, 128, 3) and obs["wrist"].std() > 5
    env.close()


@pytest.mark.parametrize("task", sorted(ENV_IDS))
def test_check_env(task):
    env = gym.make(ENV_IDS[task]).unwrapped
    check_env(env, skip_render_check=True)
    env.close()


def test_seed_reproduces_episode():
    def run(seed):
        env = gym.make(
            ENV_IDS["pick_cube"], randomization={"object_xy": 0.05, "friction_scale": [0.5, 1.5]}
        )
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        out = [obs["state"]]
        for _ in range(5):
            out.append(env.step(env.action_space.sample())[0]["state"])
        env.close()
        return np.stack(out)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.allclose(run(3)[0], run(4)[0])


def test_truncation_is_not_termination():
    env = gym.make(ENV_IDS["reach"], max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(7, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_sparse_reward_is_success_and_dense_terms_are_logged():
    env = gym.make(ENV_IDS["pick_cube"], reward_type="sparse")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(7, np.float32))
    assert reward == float(info["success"])
    assert {"reward/reach", "reward/grasp", "reward/lift", "reward/success"} <= set(info)


def test_nan_action_is_refused_with_a_clear_error():
    env = gym.make(ENV_IDS["reach"])
    env.reset(seed=0)
    action = np.zeros(7, np.float32)
    action[2] = np.nan
    with pytest.raises(ValueError, match="non-finite action"):
        env.step(action)


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="unknown reach setting"):
        gym.make(ENV_IDS["reach"], obs_mod="state")


def test_variable_impedance_action_changes_stiffness():
    env = gym.make(ENV_IDS["reach"], action_mode="variable")
    assert env.action_space.shape == (13,)
    env.reset(seed=0)
    action = np.zeros(13, np.float32)
    action[7:] = -1.0
    env.step(action)
    ctrl = env.unwrapped.runtime.arm.controller
    np.testing.assert_allclose(ctrl.stiffness_target[0], env.unwrapped.runtime.cfg.stiffness_low)


def test_position_action_mode_holds_the_tool_top_down():
    env = gym.make(ENV_IDS["pick_cube"], action_mode="position")
    assert env.action_space.shape == (4,)
    env.reset(seed=0)
    runtime = env.unwrapped.runtime
    for action in np.random.default_rng(0).uniform(-1, 1, (15, 4)).astype(np.float32):
        env.step(action)
        tilt = quat_to_axis_angle(
            quat_multiply(quat_conjugate(TOP_DOWN_QUAT), runtime.arm_state.ee_quat)
        )
        assert np.linalg.norm(tilt) < 0.05  # the fixed mode lets it tilt to max_tilt (0.5 rad)
    for gripper, width in ((-1.0, 0.0), (1.0, GRIPPER_MAX_WIDTH)):
        sent = runtime.apply_action(np.array([[0.0, 0.0, 0.0, gripper]]))
        assert sent.gripper_width[0] == width  # the 4th entry is the gripper


def test_batched_env_autoreset_keeps_final_obs():
    env = MujocoBatchedEnv("reach", num_envs=4, max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    assert obs["state"].shape == (4, 42) and obs["state"].dtype == torch.float32
    action = torch.zeros(4, 7)
    env.step(action)
    obs, reward, terminated, truncated, info = env.step(action)
    assert truncated.all() and not terminated.any()
    assert reward.shape == (4,) and reward.dtype == torch.float32
    # The returned obs starts new episodes; the final obs is the state the episode ended in.
    assert not torch.allclose(obs["state"], info["final_obs"]["state"])
    state = env.runtime.arm_state
    np.testing.assert_allclose(obs["state"][:, :3].numpy(), state.ee_pos, atol=1e-6)
    env.close()


def test_batched_worlds_match_single_env():
    """World i of the batched env evolves exactly as a single env seeded the same way."""
    batched = MujocoBatchedEnv("pick_cube", num_envs=3, num_threads=2)
    batched.runtime.seed(7)
    batched.runtime.reset_worlds(np.arange(3))
    single = gym.make(ENV_IDS["pick_cube"]).unwrapped
    single.runtime.rngs = [np.random.SeedSequence(7).spawn(3)[1]]
    single.runtime.rngs = [np.random.default_rng(single.runtime.rngs[0])]
    single.runtime.reset_worlds(np.array([0]))
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 7))
    for a in actions:
        b_obs = batched.step(torch.from_numpy(np.tile(a, (3, 1))))[0]["state"][1].numpy()
        s_obs = single.step(a.astype(np.float32))[0]["state"]
    np.testing.assert_allclose(b_obs, s_obs, atol=1e-5)
    batched.close()
    single.close()


def test_dense_success_pays_the_rest_of_the_episode_so_hovering_never_wins():
    from robot_rl.sim.experts import EXPERTS
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime

    rt = TaskRuntime(make_task("reach", reward_type="dense"), 1)
    rt.reset_worlds(np.arange(1))
    rewards, terminated = [], False
    while not terminated:
        reward, term, trunc, info = rt.step(EXPERTS["reach"](rt))
        rewards.append(float(reward[0]))
        terminated = bool(term[0])
        assert not trunc[0]
    remaining = 80 - len(rewards)
    shaping = info["reward/reach"][0] + info["reward/success"][0]  # weights 1 and 1
    assert rewards[-1] == pytest.approx(shaping + 2.0 * remaining)
    # hovering just outside the goal would earn under 1 per step (reach < 1, no success)
    assert rewards[-1] > 1.0 * (remaining + 1)
    rt.close()


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_discounted_success_bonus_outbids_hovering_forever(gamma):
    """With success_bonus_discount g, succeeding now is worth more, under any discount <= g,
    than hovering forever just short of success (reach < 1, no success term), which is what
    a learner that bootstraps at the time limit sets against it."""
    from robot_rl.sim.experts import EXPERTS
    from robot_rl.sim.registry import make_task
    from robot_rl.sim.tasks.base import TaskRuntime

    rt = TaskRuntime(make_task("reach", reward_type="dense", success_bonus_discount=gamma), 1)
    rt.reset_worlds(np.arange(1))
    terminated = False
    while not terminated:
        reward, term, _, info = rt.step(EXPERTS["reach"](rt))
        terminated = bool(term[0])
    shaping = info["reward/reach"][0] + info["reward/success"][0]
    assert reward[0] == pytest.approx(shaping + 2.0 * gamma / (1 - gamma))
    for learner_gamma in (0.5, gamma):
        hover_forever = 1.0 / (1 - learner_gamma)
        assert reward[0] > hover_forever
    rt.close()
    with pytest.raises(ValueError, match="success_bonus_discount"):
        TaskRuntime(make_task("reach", success_bonus_discount=1.0), 1)


def test_diagnostics_agree_with_the_observed_object_state():
    env = gym.make(ENV_IDS["pick_cube"])
    obs, _ = env.reset(seed=0)
    state, info = env.step(np.zeros(7, np.float32))[::4]
    state = state["state"]
    assert abs(info["diag/cube_lift"]) < 2e-3  # resting on the table
    assert info["diag/cube_lift"] == pytest.approx(state[38] - 0.02, abs=1e-6)
    assert info["diag/tcp_to_cube"] == pytest.approx(np.linalg.norm(state[-3:]), abs=1e-6)
    assert info["diag/gripper_width"] == pytest.approx(state[15], abs=1e-6)
    env.close()
    env = gym.make(ENV_IDS["peg_insert"])
    env.reset(seed=0)
    state, info = env.step(np.zeros(7, np.float32))[::4]
    tip_from_hole, fine = state["state"][-6:-3], state["state"][-3:]
    assert fine == pytest.approx(np.tanh(tip_from_hole / FINE_SCALE), abs=1e-6)
    assert info["diag/tip_depth"] == pytest.approx(-tip_from_hole[2], abs=1e-6)
    assert info["diag/tip_depth"] < 0  # the peg starts above the hole
    assert info["diag/tip_xy"] == pytest.approx(np.linalg.norm(tip_from_hole[:2]), abs=1e-6)
    env.close()
