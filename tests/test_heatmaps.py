"""Path renderings for trained trajectory conditioning: Gaussian heatmaps peak at each object's position with sigma
radius / 2, the maximum over objects; sparse flow paints each object's next step on its disc and nothing else."""

import math

import torch

from kinema.control.heatmaps import sparse_flow, trajectory_heatmaps
from kinema.control.multi_object import avoiding_paths


def test_a_heatmap_is_a_gaussian_of_sigma_half_the_radius_at_the_position():
    positions = torch.tensor([[[[10.5, 6.5]]]])  # B=1, K=1, T=1: the centre of pixel (row 6, col 10)
    maps = trajectory_heatmaps(positions, torch.tensor([[4.0]]), 16, 20)
    assert maps.shape == (1, 1, 1, 16, 20)
    assert maps[0, 0, 0, 6, 10] == 1.0 and maps.argmax() == 6 * 20 + 10
    sigma = 2.0
    for row, col in [(6, 13), (9, 10), (2, 7)]:
        d2 = (col + 0.5 - 10.5) ** 2 + (row + 0.5 - 6.5) ** 2
        assert math.isclose(maps[0, 0, 0, row, col].item(), math.exp(-d2 / (2 * sigma**2)), rel_tol=1e-5)


def test_heatmaps_peak_at_every_objects_position_in_every_frame():
    spec = avoiding_paths(3, 8, 32, seed=4)
    positions = spec.positions()[None]
    radii = torch.tensor([[o.radius for o in spec.objects]])
    maps = trajectory_heatmaps(positions, radii, 32, 32)
    assert maps.shape == (1, 1, 8, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    for t in range(8):
        for x, y in positions[0, :, t]:
            col, row = int(x), int(y)  # the pixel holding the position is a local maximum near 1
            assert maps[0, 0, t, row, col] > 0.85
            window = maps[0, 0, t, max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
            assert maps[0, 0, t, row, col] == window.max()


def test_absent_objects_leave_no_trace_and_others_stay():
    nan = float("nan")
    positions = torch.tensor([[[[8.0, 8.0], [nan, nan]], [[20.5, 4.5], [20.5, 4.5]], [[4.5, 20.5], [4.5, 20.5]]]])
    radii = torch.tensor([[3.0, 2.0, 0.0]])  # [B=1, K=3]; T=2: object 0 is gone in frame 1, object 2 never there
    maps = trajectory_heatmaps(positions, radii, 24, 24)
    alone = trajectory_heatmaps(positions[:, 1:2], radii[:, 1:2], 24, 24)
    assert maps[0, 0, 0, 7, 7] > 0.85 and maps[0, 0, 1, 7, 7] < 1e-6
    torch.testing.assert_close(maps[0, 0, 1], alone[0, 0, 1])  # the absent one does not wipe out the others
    assert maps[0, 0, :, 20, 4].max() < 1e-6  # radius 0: absent even right on a pixel centre
    flow = sparse_flow(positions, radii, 24, 24)
    assert flow.abs().max() == 0  # steps into an absent frame, standing still, or absent: no motion


def test_overlapping_blobs_take_the_maximum_not_the_sum():
    positions = torch.tensor([[[[10.5, 10.5]], [[12.5, 10.5]]]])
    radii = torch.tensor([[4.0, 4.0]])
    maps = trajectory_heatmaps(positions, radii, 24, 24)
    one = trajectory_heatmaps(positions[:, :1], radii[:, :1], 24, 24)
    assert maps.max() == 1.0
    torch.testing.assert_close(maps[0, 0, 0, 10, 11], one[0, 0, 0, 10, 11])  # midway: each blob alone, not both


def test_sparse_flow_paints_each_step_on_its_disc_and_repeats_the_last():
    positions = torch.tensor([[[[8.0, 8.0], [10.0, 7.0], [13.0, 7.0]],
                               [[24.0, 24.0], [24.0, 20.0], [24.0, 20.0]]]])  # B=1, K=2, T=3
    radii = torch.tensor([[3.0, 2.0]])
    flow = sparse_flow(positions, radii, 32, 32)
    assert flow.shape == (1, 2, 3, 32, 32)
    ys, xs = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    expected_steps = [[(2.0, -1.0), (0.0, -4.0)], [(3.0, 0.0), (0.0, 0.0)], [(3.0, 0.0), (0.0, 0.0)]]
    for t in range(3):
        expected = torch.zeros(2, 32, 32)
        for k in range(2):
            x, y = positions[0, k, t]
            disc = (xs - x) ** 2 + (ys - y) ** 2 <= radii[0, k] ** 2
            expected[:, disc] = torch.tensor(expected_steps[t][k])[:, None]
        torch.testing.assert_close(flow[0, :, t], expected)


def test_overlapping_discs_take_the_nearest_objects_step():
    positions = torch.tensor([[[[10.0, 10.0], [11.0, 10.0]], [[14.0, 10.0], [14.0, 12.0]]]])
    flow = sparse_flow(positions, torch.tensor([[3.0, 3.0]]), 24, 24)
    assert flow[0, :, 0, 9, 11].tolist() == [1.0, 0.0]  # pixel centre (11.5, 9.5): nearer the first object
    assert flow[0, :, 0, 9, 12].tolist() == [0.0, 2.0]  # (12.5, 9.5): nearer the second
