"""C51 projection and clipped double Q on distributions."""

import torch

from robot_rl.rl.losses import c51_project, cdq_target, distributional_cdq_loss


def test_projection_sums_to_one_and_stays_in_support():
    torch.manual_seed(0)
    probs = torch.rand(64, 51).softmax(-1)
    reward = torch.randn(64) * 30
    discount = torch.rand(64)
    out = c51_project(probs, reward, discount, -10.0, 10.0)
    torch.testing.assert_close(out.sum(-1), torch.ones(64))
    assert (out >= 0).all()


def test_target_exactly_on_atoms_keeps_all_mass():
    atoms, v_min, v_max = 11, 0.0, 10.0  # support 0, 1, ..., 10
    probs = torch.softmax(torch.randn(4, atoms), -1)
    reward = torch.tensor([0.0, 1.0, 3.0, -2.0])  # integer shifts: every target on an atom
    discount = torch.ones(4)
    out = c51_project(probs, reward, discount, v_min, v_max)
    torch.testing.assert_close(out.sum(-1), torch.ones(4))
    torch.testing.assert_close(out[0], probs[0])  # r = 0, gamma = 1: unchanged
    torch.testing.assert_close(out[1, 1:-1], probs[1, :-2])  # shifted by one atom...
    assert out[1, 0] == 0
    assert torch.isclose(out[1, -1], probs[1, -2:].sum())  # ...the top clipped onto v_max
    assert torch.isclose(out[3, 0], probs[3, :3].sum())  # bottom clipped onto v_min


def test_terminal_target_is_a_point_mass_on_the_reward():
    probs = torch.softmax(torch.randn(1, 11), -1)
    out = c51_project(probs, torch.tensor([2.5]), torch.tensor([0.0]), 0.0, 10.0)
    expected = torch.zeros(11)
    expected[2], expected[3] = 0.5, 0.5
    torch.testing.assert_close(out[0], expected)


def test_clipped_double_q_picks_the_lower_head_per_sample():
    atoms, v_min, v_max = 21, -10.0, 10.0
    at_minus5 = torch.full((atoms,), -30.0)
    at_minus5[5] = 30.0
    at_plus5 = torch.full((atoms,), -30.0)
    at_plus5[15] = 30.0
    # (heads, batch, atoms): sample 0 has its lower head first, sample 1 second
    next_logits = torch.stack(
        [torch.stack([at_minus5, at_plus5]), torch.stack([at_plus5, at_minus5])]
    )
    target = cdq_target(next_logits, torch.zeros(2), torch.ones(2), v_min, v_max)
    assert target.argmax(-1).tolist() == [5, 5]
    # Both heads are trained toward that one target.
    logits = torch.zeros(2, 2, atoms, requires_grad=True)
    loss, _ = distributional_cdq_loss(
        logits, next_logits, torch.zeros(2), torch.ones(2), v_min, v_max
    )
    loss.backward()
    assert (logits.grad[:, :, 5] < 0).all()  # raising the -5 atom lowers the loss


def test_projection_at_the_support_edges_of_any_support():
    # targets clamped onto v_max: for these supports (v_max - v_min) / delta rounds past the last
    # atom in float32, which once indexed beyond the support
    for v_min, v_max, atoms in [(-10.0, 200.0, 51), (-100.0, 5.0, 101), (-5.0, 100.0, 101)]:
        probs = torch.rand(3, atoms).softmax(-1)
        reward = torch.tensor([1e6, -1e6, v_max])
        out = c51_project(probs, reward, torch.tensor([0.99, 0.99, 0.0]), v_min, v_max)
        torch.testing.assert_close(out.sum(-1), torch.ones(3))
        one = torch.tensor(1.0)
        for row, atom in [(0, -1), (1, 0), (2, -1)]:  # all mass on the edge atom
            torch.testing.assert_close(out[row, atom], one)
