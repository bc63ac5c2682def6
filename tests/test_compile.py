"""The fast path: compiled updates equal eager ones; bf16 autocast keeps the fp32 outputs and
moves the weights as fp32 does; CUDA-graph replays do the updates that ordinary ones do (those
tests need a GPU)."""

import pytest
import torch
from test_learners import SHAPES, batch

from robot_rl.rl.acceleration import AccelerationConfig, FastStep, MaybeCompiled
from robot_rl.rl.fasttd3 import FastTD3, FastTD3Config
from robot_rl.rl.sac import SAC, SACConfig


def make_sac(compile_mode="off", amp="off", cuda_graph="off", device="cpu"):
    torch.manual_seed(0)
    cfg = SACConfig(
        num_critics=4, hidden=[32, 32], compile=compile_mode, amp=amp, cuda_graph=cuda_graph
    )
    return SAC(cfg, SHAPES, 2).to(device)


def make_fasttd3(compile_mode="off", amp="off", cuda_graph="off", device="cpu", **settings):
    torch.manual_seed(0)
    cfg = FastTD3Config(
        actor_hidden=[16],
        critic_hidden=[32],
        atoms=11,
        compile=compile_mode,
        amp=amp,
        cuda_graph=cuda_graph,
        **settings,
    )
    return FastTD3(cfg, SHAPES, 2, num_envs=4, device=device)


def run_updates(agent, steps=3, device="cpu", update_actor=lambda step: True):
    metrics = []
    for step in range(steps):
        torch.manual_seed(step)
        b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch(seed=step).items()}
        b["obs"], b["next_obs"] = ({"state": b[k]["state"].to(device)} for k in ("obs", "next_obs"))
        agent.encoder.update_norm(b["obs"])  # as the trainer does between updates
        metrics.append(agent.update(b, update_actor=update_actor(step)))
    return metrics


def weight_change(agent, start) -> torch.Tensor:
    """All of ``agent``'s weights minus ``start``, flat."""
    return torch.cat([(p - s).flatten() for p, s in zip(agent.parameters(), start, strict=True)])


@pytest.mark.slow
@pytest.mark.parametrize("make", [make_sac, make_fasttd3], ids=["sac", "fasttd3"])
def test_compiled_update_equals_eager_update(make, monkeypatch):
    pytest.importorskip("torch._inductor")
    monkeypatch.delenv("TORCHDYNAMO_DISABLE", raising=False)  # conftest turns compile off
    torch._dynamo.reset()
    eager, compiled = make("off"), make("on")  # "on": a failed compile is an error
    for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
        assert torch.equal(a, b)
    m_eager = run_updates(eager)
    with torch._inductor.config.patch(fallback_random=True):  # eager's random stream
        m_compiled = run_updates(compiled)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # really compiled
    for me, mc in zip(m_eager, m_compiled, strict=True):
        for key in me:
            torch.testing.assert_close(me[key], mc[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("make", [make_sac, make_fasttd3], ids=["sac", "fasttd3"])
def test_bf16_update_keeps_fp32_weights_and_follows_the_fp32_update(make):
    fp32, bf16 = make(amp="off"), make(amp="on")
    start = [p.detach().clone() for p in fp32.parameters()]
    m32, m16 = run_updates(fp32, 1)[0], run_updates(bf16, 1)[0]
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    assert all(v.dtype == torch.float32 for v in m16.values())  # losses and Q in fp32
    torch.testing.assert_close(m16["loss/critic"], m32["loss/critic"], rtol=0.05, atol=1e-3)
    step32, step16 = weight_change(fp32, start), weight_change(bf16, start)
    assert step16.abs().sum() > 0
    assert torch.nn.functional.cosine_similarity(step32, step16, dim=0) > 0.95


def test_failed_compile_falls_back_to_eager_with_a_warning_unless_required(monkeypatch):
    def broken_compile(fn):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    auto = MaybeCompiled(lambda x: x + 1, "auto")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert auto(torch.ones(1)).item() == 2
    assert auto(torch.ones(1)).item() == 2  # eager from then on
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        MaybeCompiled(lambda x: x + 1, "on")(torch.ones(1))


class BrokenBackward(torch.autograd.Function):
    """Identity whose backward fails, as a lazily compiled backward pass can."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("InductorError: backward failed to compile")


def test_a_compiled_backward_that_fails_falls_back_to_eager_unless_required(monkeypatch):
    def compile_with_broken_backward(fn):
        def run(*args, **kwargs):
            loss, metrics = fn(*args, **kwargs)
            return BrokenBackward.apply(loss), metrics

        return run

    monkeypatch.setattr(torch, "compile", compile_with_broken_backward)
    weight = torch.nn.Parameter(torch.ones(2))

    def losses(x):
        loss = (weight * x).sum()
        return loss, {"loss/linear": loss.detach()}

    def fast_step(compile_mode):
        optimizer = torch.optim.SGD([weight], lr=0.5)
        return FastStep(losses, optimizer, AccelerationConfig(compile=compile_mode, amp="off"))

    auto = fast_step("auto")
    with pytest.warns(RuntimeWarning, match="backward failed to compile"):
        auto(torch.ones(2))
    torch.testing.assert_close(weight.detach(), torch.full((2,), 0.5))  # one eager SGD step
    auto(torch.ones(2))  # eager from then on: no warning, no error
    torch.testing.assert_close(weight.detach(), torch.zeros(2))
    with pytest.raises(RuntimeError, match="backward failed to compile"):
        fast_step("on")(torch.ones(2))


@pytest.mark.parametrize("setting", ["compile", "amp", "cuda_graph"])
def test_unknown_switch_values_are_refused(setting):
    with pytest.raises(ValueError, match=f"{setting} must be auto, on or off"):
        SAC(SACConfig(**{setting: "fast"}), SHAPES, 2)


def test_cuda_graphs_required_without_cuda_are_refused():
    with pytest.raises(ValueError, match="cuda_graph=on needs a CUDA device"):
        run_updates(make_sac(cuda_graph="on"), 1)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def alternate(step):
    return step % 2 == 0  # two graphs: with and without the actor


@cuda
@pytest.mark.parametrize("compile_mode", ["off", "on"])
def test_cuda_graph_replays_equal_ordinary_updates(compile_mode, monkeypatch):
    """FastTD3 without target-policy noise draws nothing at random: graphed and ordinary updates
    of the same batches must leave the same weights, through capture and many replays."""
    monkeypatch.delenv("TORCHDYNAMO_DISABLE", raising=False)
    torch._dynamo.reset()
    plain, graphed = (
        make_fasttd3(compile_mode, "off", graph, "cuda", policy_noise=0.0)
        for graph in ("off", "on")
    )
    m_plain = run_updates(plain, 12, "cuda", alternate)
    m_graphed = run_updates(graphed, 12, "cuda", alternate)
    assert len(graphed.train_step.graphs) == 2  # really replayed, with and without the actor
    for mp, mg in zip(m_plain, m_graphed, strict=True):
        for key in mp:
            torch.testing.assert_close(mp[key], mg[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(plain.parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@cuda
def test_cuda_graph_replays_take_new_inputs_and_fresh_random_draws():
    w = torch.nn.Parameter(torch.zeros(3, device="cuda"))

    def losses(x):
        return ((w - x) ** 2).sum(), {"x": x.sum(), "noise": torch.randn(3, device="cuda")}

    cfg = AccelerationConfig(compile="off", amp="off", cuda_graph="on")
    step = FastStep(losses, torch.optim.Adam([w], lr=0.1), cfg)
    out = [step(torch.full((3,), float(i), device="cuda")) for i in range(5)]
    assert len(step.graphs) == 1
    assert [float(m["x"]) for m in out] == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert not torch.equal(out[3]["noise"], out[4]["noise"])


@cuda
def test_cuda_graph_sac_update_follows_the_ordinary_update():
    """SAC draws actions and ensemble subsets, so the two runs' draws differ; their weights must
    still move alike."""
    plain, graphed = (make_sac("off", "off", graph, "cuda") for graph in ("off", "on"))
    start = [p.detach().clone() for p in plain.parameters()]
    run_updates(plain, 8, "cuda")
    metrics = run_updates(graphed, 8, "cuda")
    assert len(graphed.train_step.graphs) == 1
    similarity = torch.nn.functional.cosine_similarity(
        weight_change(plain, start), weight_change(graphed, start), dim=0
    )
    assert similarity > 0.9
    assert all(bool(torch.isfinite(v).all()) for m in metrics for v in m.values())
