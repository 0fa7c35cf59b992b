"""Affine and thin-plate-spline flow fields, affine fits and the camera + object split (kinema.video.motion)."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.video.motion import affine_flow, decompose_motion, fit_affine, robust_fit_affine, tps_flow

H, W = 18, 24
MATRIX = torch.tensor([[1.03, 0.04, 1.5], [-0.02, 0.98, -0.75]], dtype=torch.float64)  # [A | b], centred coordinates


def test_affine_flow_moves_each_pixel_by_the_centred_point_map():
    flow = affine_flow(MATRIX, H, W)
    assert flow.shape == (2, H, W)
    centre = torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=torch.float64)
    for x, y in [(0, 0), (23, 5), (12, 8), (7, 17)]:
        point = torch.tensor([x, y], dtype=torch.float64)
        expected = MATRIX[:, :2] @ (point - centre) + MATRIX[:, 2] + centre - point
        torch.testing.assert_close(flow[:, y, x], expected)
    torch.testing.assert_close(affine_flow(torch.eye(2, 3), H, W), torch.zeros(2, H, W))  # identity: no motion
    with pytest.raises(KinemaError, match=r"\[\.\., 2, 3\]"):
        affine_flow(torch.eye(3), H, W)


def test_affine_fit_recovers_a_known_transform_exactly_and_under_noise():
    flow = affine_flow(MATRIX, H, W)
    torch.testing.assert_close(fit_affine(flow), MATRIX)
    noise = 0.3 * torch.randn(flow.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert (fit_affine(flow + noise) - MATRIX).abs().max() < 0.02
    batch = torch.stack([MATRIX, torch.eye(2, 3, dtype=torch.float64)])  # batched [.., 2, 3]
    torch.testing.assert_close(fit_affine(affine_flow(batch, H, W)), batch)


def test_affine_fit_weights_leave_out_a_region():
    flow = affine_flow(MATRIX, H, W)
    spoiled = flow.clone()
    spoiled[:, :6] += 5.0
    weights = torch.ones(H, W, dtype=torch.float64)
    weights[:6] = 0
    torch.testing.assert_close(fit_affine(spoiled, weights), MATRIX)
    assert (fit_affine(spoiled) - MATRIX).abs().max() > 0.5
    torch.testing.assert_close(fit_affine(flow, torch.zeros(H, W, dtype=torch.float64)),
                               torch.eye(2, 3, dtype=torch.float64))  # nothing to fit: no motion


def _with_object(noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """A camera flow (MATRIX) + noise, with a 6x6 object moving by (-4, 3) px more; and the object mask."""
    generator = torch.Generator().manual_seed(1)
    flow = affine_flow(MATRIX, H, W) + noise * torch.randn(2, H, W, generator=generator, dtype=torch.float64)
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[4:10, 14:20] = True
    flow[:, mask] += torch.tensor([[-4.0], [3.0]], dtype=torch.float64)
    return flow, mask


def test_decompose_motion_isolates_an_object_from_the_camera():
    flow, mask = _with_object()
    assert (fit_affine(flow) - MATRIX).abs().max() > 0.1  # least squares is pulled by the object
    matrix, weights = robust_fit_affine(flow)
    assert (matrix - MATRIX).abs().max() < 0.02
    assert weights[mask].max() == 0 and weights[~mask].mean() > 0.7
    camera, objects = decompose_motion(flow)
    torch.testing.assert_close(camera + objects, flow)
    torch.testing.assert_close(objects[:, mask].mean(1), torch.tensor([-4.0, 3.0], dtype=torch.float64),
                               atol=0.05, rtol=0)
    assert objects[:, ~mask].norm(dim=0).mean() < 0.2  # the background keeps only its noise
    torch.testing.assert_close(camera, affine_flow(matrix, H, W))


def test_thin_plate_spline_interpolates_its_control_points_exactly():
    source = torch.tensor([[2.0, 3.0], [20.0, 4.0], [6.0, 15.0], [17.0, 13.0], [11.0, 8.0]], dtype=torch.float64)
    target = source + torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.5, 1.0], [0.5, 0.5], [2.0, -1.0]], dtype=torch.float64)
    flow = tps_flow(source, target, H, W)
    for (x, y), (tx, ty) in zip(source.long().tolist(), target.tolist()):
        torch.testing.assert_close(flow[:, y, x], torch.tensor([tx - x, ty - y], dtype=torch.float64))
    assert flow.norm(dim=0).amax() > 2.0  # it bends between the points, not a constant field


def test_thin_plate_spline_through_affine_pairs_is_that_affine_field():
    source = torch.tensor([[1.0, 1.0], [22.0, 2.0], [3.0, 16.0], [19.0, 15.0]], dtype=torch.float64)
    target = source + affine_flow(MATRIX, H, W)[:, source[:, 1].long(), source[:, 0].long()].T
    torch.testing.assert_close(tps_flow(source, target, H, W), affine_flow(MATRIX, H, W))


def test_thin_plate_spline_rejects_degenerate_control_points():
    line = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    with pytest.raises(KinemaError, match="one line"):
        tps_flow(line, line + 1, H, W)
    repeated = torch.tensor([[0.0, 0.0], [5.0, 1.0], [2.0, 7.0], [5.0, 1.0]])
    with pytest.raises(KinemaError, match="repeated"):
        tps_flow(repeated, repeated + 1, H, W)
    with pytest.raises(KinemaError, match="K >= 3"):
        tps_flow(line[:2], line[:2], H, W)
