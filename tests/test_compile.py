"""The fast path: compiled updates equal eager ones; bf16 autocast keeps the fp32 outputs and
moves the weights as fp32 does."""

import pytest
import torch
from test_learners import SHAPES, batch

from robot_rl.rl.acceleration import MaybeCompiled
from robot_rl.rl.fasttd3 import FastTD3, FastTD3Config
from robot_rl.rl.sac import SAC, SACConfig


def make_sac(compile_mode="off", amp="off"):
    torch.manual_seed(0)
    cfg = SACConfig(num_critics=4, hidden=[32, 32], compile=compile_mode, amp=amp)
    return SAC(cfg, SHAPES, 2)


def make_fasttd3(compile_mode="off", amp="off"):
    torch.manual_seed(0)
    cfg = FastTD3Config(
        actor_hidden=[16], critic_hidden=[32], atoms=11, compile=compile_mode, amp=amp
    )
    return FastTD3(cfg, SHAPES, 2, num_envs=4)


def run_updates(agent, steps=3):
    metrics = []
    for step in range(steps):
        torch.manual_seed(step)
        metrics.append(agent.update(batch(seed=step), update_actor=True))
    return metrics


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
    step32 = torch.cat([(p - s).flatten() for p, s in zip(fp32.parameters(), start, strict=True)])
    step16 = torch.cat([(p - s).flatten() for p, s in zip(bf16.parameters(), start, strict=True)])
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


@pytest.mark.parametrize("setting", ["compile", "amp"])
def test_unknown_switch_values_are_refused(setting):
    with pytest.raises(ValueError, match=f"{setting} must be auto, on or off"):
        SAC(SACConfig(**{setting: "fast"}), SHAPES, 2)
