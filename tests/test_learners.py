"""Invariants of the SAC/RLPD and FastTD3 learners and their networks."""

import math

import pytest
import torch

from robot_rl.rl.checkpoint import flat_state, load_flat_state
from robot_rl.rl.fasttd3 import FastTD3, FastTD3Config
from robot_rl.rl.networks import CriticEnsemble, RunningNorm, TanhGaussianActor, random_shift
from robot_rl.rl.sac import SAC, SACConfig

SHAPES = {"state": (5,)}
KEYS = ("obs", "action", "reward", "discount", "next_obs")  # SAC.losses' batch arguments


def batch(n=64, obs_dim=5, action_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": {"state": torch.randn(n, obs_dim, generator=g)},
        "next_obs": {"state": torch.randn(n, obs_dim, generator=g)},
        "action": torch.rand(n, action_dim, generator=g) * 2 - 1,
        "reward": torch.randn(n, generator=g),
        "discount": torch.full((n,), 0.99),
    }


def sac_with_constant_target_critics(**settings) -> SAC:
    """A SAC whose target critic k predicts k whatever its input."""
    agent = SAC(
        SACConfig(num_critics=10, hidden=[8], compile="off", amp="off", **settings), SHAPES, 2
    )
    with torch.no_grad():
        agent.target_critic.head.weight.zero_()
        agent.target_critic.head.bias.copy_(torch.arange(10.0).view(10, 1, 1))
    return agent


def td_targets(agent: SAC, draws: int, seed: int = 0) -> torch.Tensor:
    """The mean TD target of ``draws`` critic updates' losses at reward 0 and discount 1."""
    b = {**batch(n=4), "reward": torch.zeros(4), "discount": torch.ones(4)}
    torch.manual_seed(seed)
    return torch.stack(
        [
            agent.losses(*(b[k] for k in KEYS), update_actor=False)[1]["q/target"]
            for _ in range(draws)
        ]
    )


@pytest.mark.parametrize("subset", [1, 2, 10])
def test_sac_target_is_the_minimum_of_a_random_subset_of_critics(subset):
    targets = td_targets(sac_with_constant_target_critics(critic_subset=subset), 1000)
    # the minimum of M distinct members of {0..9}: at most 10 - M, with
    # E = sum_k k C(9 - k, M - 1) / C(10, M) (8/3 for M = 2; 0 for all ten)
    expected = sum(k * math.comb(9 - k, subset - 1) for k in range(10)) / math.comb(10, subset)
    assert float(targets.max()) == 10 - subset
    assert abs(float(targets.mean()) - expected) < 0.25


def test_entropy_backup_subtracts_alpha_log_pi_from_the_target():
    agent = sac_with_constant_target_critics(critic_subset=10, entropy_backup=True)
    b = batch(n=4)
    torch.manual_seed(1)  # the draws of losses(): the next action, then the critic subset
    _, next_log_prob = agent.actor(agent.encoder(b["next_obs"]))
    alpha = agent.log_alpha.exp().detach()
    with_backup = td_targets(agent, 1, seed=1)[0]
    torch.testing.assert_close(with_backup, -(alpha * next_log_prob).mean())
    agent.cfg.entropy_backup = False  # RLPD's default: the minimum alone (0 here)
    assert float(td_targets(agent, 1, seed=1)[0]) == 0


def test_critic_ensemble_is_one_batched_module_of_independent_members():
    critic = CriticEnsemble(10, 7, [32, 32])
    out = critic(torch.randn(16, 5), torch.randn(16, 2))
    assert out.shape == (10, 16, 1)
    assert out.std(0).mean() > 0  # members are initialised independently
    assert not any(
        isinstance(m, torch.nn.ModuleList) and len(m) == 10 for m in critic.modules()
    )  # no per-critic Python loop
    features, action = torch.randn(16, 5), torch.randn(16, 2)
    before = critic(features, action)
    with torch.no_grad():  # each member has its own LayerNorm gain: changing one moves only it
        critic.norms[0].weight[3].mul_(2.0)
    after = critic(features, action)
    changed = (after - before).abs().amax((1, 2)) > 0
    assert changed.tolist() == [i == 3 for i in range(10)]
    subset = torch.tensor([3, 7])
    torch.testing.assert_close(critic(features, action, subset), after[subset])


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    actor = TanhGaussianActor(5, 2, [16])
    features = torch.randn(4096, 5)
    action, log_prob = actor(features)
    assert action.abs().max() < 1
    mean, log_std = actor.net(features).chunk(2, -1)
    std = log_std.clamp(*actor.log_std_range).exp()
    base = torch.distributions.Normal(mean, std)
    pre = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
    ref = (base.log_prob(pre) - torch.log(1 - action.pow(2) + 1e-6)).sum(-1)
    close = (action.abs() < 0.99).all(-1)
    torch.testing.assert_close(log_prob[close], ref[close], atol=2e-3, rtol=1e-3)


def test_sac_update_fits_a_fixed_batch_and_tunes_temperature():
    torch.manual_seed(0)
    agent = SAC(SACConfig(num_critics=4, critic_subset=2, hidden=[64, 64]), SHAPES, 2)
    b = batch()
    first = agent.update(b, update_actor=True)
    for _ in range(150):
        last = agent.update(b, update_actor=True)
    assert last["loss/critic"] < 0.5 * first["loss/critic"]
    assert agent.target_entropy == -1.0  # -|A| / 2
    assert float(agent.log_alpha.exp()) != pytest.approx(0.01)  # the temperature moved


def test_sac_target_network_tracks_slowly():
    agent = SAC(SACConfig(num_critics=2, hidden=[16]), SHAPES, 2)
    before = [p.clone() for p in agent.target_critic.parameters()]
    agent.update(batch(), update_actor=False)
    for p_t, p_old, p in zip(
        agent.target_critic.parameters(), before, agent.critic.parameters(), strict=True
    ):
        # after one update: target = (1 - tau) old + tau new
        torch.testing.assert_close(p_t, p_old + 0.005 * (p.detach() - p_old))


def test_sac_td_targets_stay_in_the_configured_return_range():
    b = {**batch(), "reward": torch.full((64,), 5.0)}
    clamped = SAC(SACConfig(num_critics=2, hidden=[16], q_target_range=[0.0, 1.0]), SHAPES, 2)
    free = SAC(SACConfig(num_critics=2, hidden=[16]), SHAPES, 2)
    _, held = clamped.losses(*(b[k] for k in KEYS), update_actor=False)
    _, unheld = free.losses(*(b[k] for k in KEYS), update_actor=False)
    assert held["q/target"].item() == 1.0  # every target 5 + 0.99 * Q' held at the top
    assert unheld["q/target"].item() > 3.0
    with pytest.raises(ValueError, match="q_target_range"):
        SAC(SACConfig(q_target_range=[1.0, 0.0]), SHAPES, 2)


def test_images_train_the_encoder_through_the_critic_only():
    shapes = {"state": (3,), "front": (32, 32, 3)}
    agent = SAC(SACConfig(num_critics=2, hidden=[32]), shapes, 2)
    b = {
        "obs": {
            "state": torch.randn(8, 3),
            "front": torch.randint(0, 255, (8, 32, 32, 3), dtype=torch.uint8),
        },
        "next_obs": {
            "state": torch.randn(8, 3),
            "front": torch.randint(0, 255, (8, 32, 32, 3), dtype=torch.uint8),
        },
        "action": torch.zeros(8, 2),
        "reward": torch.ones(8),
        "discount": torch.ones(8),
    }
    encoder = list(agent.encoder.encoders.parameters())

    def encoder_grads(update_actor: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)  # the same augmentations and critic subset both times
        agent.zero_grad(set_to_none=True)
        loss, _ = agent.losses(*(b[k] for k in KEYS), update_actor=update_actor)
        loss.backward()
        return [p.grad.clone() for p in encoder]

    critic_only, with_actor = encoder_grads(False), encoder_grads(True)
    assert any(g.abs().sum() > 0 for g in critic_only)  # the critic trains the encoder
    for g, h in zip(critic_only, with_actor, strict=True):
        torch.testing.assert_close(g, h, rtol=0, atol=0)  # the actor's loss adds nothing
    assert agent.actor.net[0].weight.grad is not None  # though it trains the actor


def test_random_shift_is_a_replicate_padded_translation():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (64, 20, 24, 3), dtype=torch.uint8)
    out = random_shift(img, pad=4)
    assert out.shape == img.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(img.permute(0, 3, 1, 2).float(), (4,) * 4, mode="replicate")
    offsets = set()
    for k in range(len(img)):  # each output is one 20x24 window of the padded image
        match = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(
                padded[k, :, dy : dy + 20, dx : dx + 24].permute(1, 2, 0), out[k].float()
            )
        ]
        assert match, k
        offsets.add(match[0])
    assert len(offsets) > 10  # offsets differ between images


def test_running_norm_matches_dataset_statistics_updating_in_place():
    norm = RunningNorm(3)
    addresses = [b.data_ptr() for b in norm.buffers()]  # a CUDA graph reads them there
    data = torch.randn(1000, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 0.0])
    for chunk in data.split(100):
        norm.update(chunk)
    torch.testing.assert_close(norm.mean, data.mean(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.var, data.var(0, unbiased=False), atol=1e-3, rtol=1e-3)
    assert [b.data_ptr() for b in norm.buffers()] == addresses


def test_fasttd3_noise_redrawn_only_for_finished_envs():
    agent = FastTD3(
        FastTD3Config(actor_hidden=[16], critic_hidden=[16], atoms=11), SHAPES, 2, num_envs=8
    )
    std = agent.noise_std.clone()
    assert ((std >= 0.001) & (std <= 0.4)).all()
    done = torch.tensor([True, False, False, True, False, False, False, False])
    agent.redraw_noise(done)
    assert torch.equal(agent.noise_std[~done], std[~done])
    assert not torch.equal(agent.noise_std[done], std[done])


def test_fasttd3_actor_starts_small_and_actor_updates_are_delayed():
    agent = FastTD3(
        FastTD3Config(actor_hidden=[16], critic_hidden=[16], atoms=11, policy_delay=2),
        SHAPES,
        2,
        num_envs=4,
    )
    assert agent.act({"state": torch.randn(32, 5)}, deterministic=True).abs().max() < 0.2
    actor_before = [p.clone() for p in agent.actor.parameters()]
    agent.update(batch())
    pairs = list(zip(agent.actor.parameters(), actor_before, strict=True))
    assert all(torch.equal(p, q) for p, q in pairs)
    metrics = agent.update(batch())
    assert "loss/actor" in metrics
    pairs = list(zip(agent.actor.parameters(), actor_before, strict=True))
    assert any(not torch.equal(p, q) for p, q in pairs)


@pytest.mark.parametrize("weight, bound", [(0.0, 0.0), (0.01, 0.0), (0.01, 2.0), (0.01, 10.0)])
def test_fasttd3_preactivation_penalty_pulls_a_saturated_actor_back(weight, bound):
    """At a preactivation of 6 tanh' is 2.5e-5: the critic no longer moves the actor. The
    penalty's gradient, 2 * weight * (6 - bound) per sample on the last bias, does; a bound
    beyond the preactivation leaves it free."""
    cfg = FastTD3Config(
        actor_hidden=[16],
        critic_hidden=[16],
        atoms=11,
        preactivation_l2=weight,
        preactivation_bound=bound,
    )
    agent = FastTD3(cfg, SHAPES, 2, num_envs=4)
    with torch.no_grad():
        agent.actor.net[-1].bias.fill_(6.0)
    b = batch()
    loss, metrics = agent.losses(*(b[k] for k in KEYS), update_actor=True)
    loss.backward()
    grad = agent.actor.net[-1].bias.grad
    if weight == 0 or bound > 6.5:
        assert grad.abs().max() < 1e-3
        assert weight == 0 or metrics["loss/preactivation_l2"] == 0
    else:
        pre = agent.actor.preactivation(agent.encoder(b["obs"])).detach()
        assert pre.min() > bound
        expected = 2 * weight * (pre - bound).mean(0)
        torch.testing.assert_close(grad, expected, rtol=0.05, atol=1e-4)
        assert (grad > 0).all()  # gradient descent lowers the bias, out of the tail


def test_activation_setting_reaches_actor_and_critics():
    def outputs(activation):
        torch.manual_seed(0)
        agent = SAC(SACConfig(num_critics=2, hidden=[16], activation=activation), SHAPES, 2)
        b = batch(8)
        q = agent.critic(agent.encoder(b["obs"]), b["action"])
        return q, agent.act(b["obs"], deterministic=True)

    (q_relu, a_relu), (q_tanh, a_tanh) = outputs("relu"), outputs("tanh")
    assert not torch.allclose(q_relu, q_tanh) and not torch.allclose(a_relu, a_tanh)
    with pytest.raises(ValueError, match="activation"):
        SAC(SACConfig(activation="gelu"), SHAPES, 2)


def test_checkpoints_from_before_the_activation_setting_load_as_relu(tmp_path):
    """The default became tanh after relu runs were saved without the key: those must not come
    back with tanh layers (same shapes, so nothing else would notice)."""
    import json

    from robot_rl.cli.main import resume_overrides
    from robot_rl.rl.agents import algo_from_dict

    saved = {"name": "sac", "num_critics": 2}
    assert algo_from_dict(saved).activation == "relu"
    assert algo_from_dict({**saved, "activation": "tanh"}).activation == "tanh"
    assert SACConfig().activation == "tanh"
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    train = {"algo": saved, "env": {}, "task": "reach"}
    (run / "checkpoint" / "config.json").write_text(json.dumps({"train": train}))
    assert 'algo.activation="relu"' in resume_overrides([f"resume={run}"])


@pytest.mark.parametrize("algo", ["sac", "fasttd3"])
def test_learn_makes_updates_per_learn_updates_the_actor_of_sac_on_the_last(algo, monkeypatch):
    if algo == "sac":
        agent = SAC(SACConfig(num_critics=2, hidden=[8], utd=3, compile="off"), SHAPES, 2)
    else:
        cfg = FastTD3Config(actor_hidden=[8], critic_hidden=[8], atoms=11, updates_per_step=5)
        agent = FastTD3(cfg, SHAPES, 2, num_envs=2)
    calls = []
    monkeypatch.setattr(agent, "update", lambda b, update_actor=None: calls.append(update_actor))
    agent.learn(lambda n: batch(n))
    assert len(calls) == agent.updates_per_learn == (3 if algo == "sac" else 5)
    if algo == "sac":  # SERL: critic updates, then one with the actor and temperature
        assert calls == [False, False, True]


def test_fasttd3_keeps_the_actor_delay_in_phase_across_a_checkpoint():
    def make():
        torch.manual_seed(0)
        cfg = FastTD3Config(actor_hidden=[8], critic_hidden=[8], atoms=11, policy_delay=2)
        return FastTD3(cfg, SHAPES, 2, num_envs=2)

    agent = make()
    agent.update(batch())  # critic only: the next update is the actor's
    tensors, meta = flat_state(agent)
    resumed = make()
    load_flat_state(resumed, tensors, meta)
    assert "loss/actor" in resumed.update(batch())
    del tensors["model._extra_state"]  # a checkpoint from before the counter was saved
    older = make()
    load_flat_state(older, tensors, meta)
    assert older.updates == 0


def test_a_checkpoint_of_another_network_is_refused():
    def sac(hidden):
        return SAC(SACConfig(num_critics=2, hidden=hidden, compile="off"), SHAPES, 2)

    tensors, meta = flat_state(sac([8]))
    with pytest.raises(ValueError, match="does not fit SAC"):  # other layer sizes
        load_flat_state(sac([16]), tensors, meta)
    weight = next(k for k in tensors if k.startswith("model.actor."))
    del tensors[weight]
    with pytest.raises(ValueError, match=f"does not fit SAC: missing \\['{weight[6:]}'\\]"):
        load_flat_state(sac([8]), tensors, meta)
