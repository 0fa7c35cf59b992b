"""Parametric motion fields: affine and thin-plate-spline flows, affine fits and alignment, camera + object split
(chapter 11.1.3).

Flows follow `kinema.video.flow`: [.., 2, H, W] displacements (dx, dy) in pixels, x right, y down, pixel centres
at integer coordinates. A motion model is a point map p -> p' written in coordinates centred on the frame centre
c = ((W-1)/2, (H-1)/2); its flow is p' - p. An affine motion is p' = A p + b, held as the matrix [A | b] of shape
[.., 2, 3] (the identity [I | 0] is no motion), so b is the displacement of the frame centre and a zoom or a
rotation in A turns about the centre. The chapter's pixel-level deformation field p' = A p + t (11.1.3) is this
map; its global-motion fields (11.3) are special cases: pan/tilt b = (alpha, beta), zoom A = (1 + gamma) I,
rotation A ~ I + omega [[0, -1], [1, 0]].
"""

from __future__ import annotations

import torch
from torch import Tensor

from kinema.errors import KinemaError
from kinema.video.flow import inside_frame, warp

TUKEY_C = 4.685  # Tukey biweight cut-off in robust standard deviations (95% efficiency under Gaussian noise)
MIN_SCALE = 1e-3  # floor of a robust residual scale (px, or brightness), so a perfect fit does not divide by zero
LM_DAMPING = 1e-3  # x the mean curvature: keeps what the images cannot tell (a lone disc's roll) near the start
FLAT_GRADIENT = 0.02  # brightness change per px below which a pixel is flat: it fits any motion, so tells no noise


def centred_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Pixel coordinates (x, y) relative to the frame centre: [2, H, W]."""
    ys = torch.arange(height, device=device, dtype=dtype) - (height - 1) / 2
    xs = torch.arange(width, device=device, dtype=dtype) - (width - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y])


def _check_matrix(matrix: Tensor) -> None:
    if matrix.ndim < 2 or matrix.shape[-2:] != (2, 3):
        raise KinemaError(f"an affine motion must be a [.., 2, 3] matrix [A | b], got shape {tuple(matrix.shape)}")


def _check_flow(flow: Tensor) -> None:
    if flow.ndim < 3 or flow.shape[-3] != 2:
        raise KinemaError(f"a flow must be [.., 2, H, W] (dx, dy in px), got shape {tuple(flow.shape)}")


def affine_flow(matrix: Tensor, height: int, width: int) -> Tensor:
    """Flow [.., 2, H, W] of the affine point map p' = A p + b (centred pixel coordinates), matrix [.., 2, 3]."""
    _check_matrix(matrix)
    grid = centred_grid(height, width, matrix.device, matrix.dtype)
    moved = torch.einsum("...ij,jhw->...ihw", matrix[..., :2], grid) + matrix[..., 2, None, None]
    return moved - grid


def _tps_kernel(distance_sq: Tensor) -> Tensor:
    """Thin-plate radial basis U(r) = r^2 log r^2, with U(0) = 0 (Bookstein 1989)."""
    return distance_sq * torch.log(distance_sq.clamp(min=1e-12))


def tps_flow(source: Tensor, target: Tensor, height: int, width: int) -> Tensor:
    """Thin-plate-spline flow [.., 2, H, W] carrying control points `source` [.., K, 2] (x, y px) exactly onto
    `target` [.., K, 2], with the least bending energy (Bookstein 1989, "Principal warps")."""
    if source.ndim < 2 or source.shape[-1] != 2 or source.shape != target.shape or source.shape[-2] < 3:
        raise KinemaError(f"thin-plate splines need source and target points [.., K >= 3, 2] of one shape, got "
                          f"{tuple(source.shape)} and {tuple(target.shape)}")
    count = source.shape[-2]
    centre = source.new_tensor([(width - 1) / 2, (height - 1) / 2])
    points = source - centre
    pair_sq = (points[..., :, None, :] - points[..., None, :, :]).square().sum(-1)  # [.., K, K]
    spread = torch.linalg.svdvals(points - points.mean(-2, keepdim=True))[..., -1]  # 0: all on one line
    off_diagonal = ~torch.eye(count, dtype=torch.bool, device=points.device)
    if bool((spread < 1e-6).any()) or bool((pair_sq[..., off_diagonal] < 1e-12).any()):
        raise KinemaError("thin-plate spline: the control points are repeated or all on one line")
    # f(p) = a0 + a1 x + a2 y + sum_i w_i U(|p - p_i|); solve [[K, P], [P^T, 0]] [w; a] = [target; 0]
    affine = torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)  # [.., K, 3]
    zeros = affine.new_zeros(*affine.shape[:-2], 3, 3)
    system = torch.cat([torch.cat([_tps_kernel(pair_sq), affine], dim=-1),
                        torch.cat([affine.transpose(-1, -2), zeros], dim=-1)], dim=-2)
    rhs = torch.cat([target - centre, affine.new_zeros(*affine.shape[:-2], 3, 2)], dim=-2)
    solution = torch.linalg.solve(system, rhs)  # [.., K + 3, 2]
    weights, coefficients = solution[..., :count, :], solution[..., count:, :]
    grid = centred_grid(height, width, source.device, source.dtype).flatten(1)  # [2, HW]
    distance_sq = (grid.T[..., None, :] - points[..., None, :, :]).square().sum(-1)  # [.., HW, K]
    mapped = (coefficients[..., :1, :] + grid.T @ coefficients[..., 1:, :]
              + _tps_kernel(distance_sq) @ weights)  # [.., HW, 2]
    return (mapped - grid.T).transpose(-1, -2).unflatten(-1, (height, width))


def fit_affine(flow: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted least-squares affine motion [.., 2, 3] of a flow [.., 2, H, W] (weights [.., H, W], >= 0):
    argmin sum_p w(p) |A p + b - (p + flow(p))|^2 in centred coordinates; differentiable. A vanishing ridge
    pulls [A - I | b] towards 0, so an all-zero weighting gives no motion."""
    _check_flow(flow)
    height, width = flow.shape[-2:]
    if weights is None:
        weights = flow.new_ones(flow.shape[:-3] + (height, width))
    elif weights.shape != flow.shape[:-3] + (height, width):
        raise KinemaError(f"affine fit weights must be {tuple(flow.shape[:-3]) + (height, width)}, "
                          f"got {tuple(weights.shape)}")
    grid = centred_grid(height, width, flow.device, flow.dtype)
    design = torch.cat([grid, torch.ones_like(grid[:1])]).flatten(1)  # [3, HW]: rows x, y, 1
    w = weights.to(flow.dtype).flatten(-2)  # [.., HW]
    normal = torch.einsum("...n,in,jn->...ij", w, design, design)  # [.., 3, 3]
    ridge = 1e-9 * normal.diagonal(dim1=-2, dim2=-1).sum(-1).clamp(min=1.0)
    normal = normal + ridge[..., None, None] * torch.eye(3, device=flow.device, dtype=flow.dtype)
    rhs = torch.einsum("...kn,jn->...jk", flow.flatten(-2) * w[..., None, :], design)  # [.., 3, 2]
    deviation = torch.linalg.solve(normal, rhs).transpose(-1, -2)  # [A - I | b]
    return deviation + torch.eye(2, 3, device=flow.device, dtype=flow.dtype)


def _tukey_weights(residual: Tensor, prior: Tensor, dims: int, widen: float = 1.0) -> Tensor:
    """Tukey biweights [.., H, W] of the lengths [.., H, W] of `dims`-dimensional residuals, cut off at `widen` x
    TUKEY_C noise scales; the scale comes from their median over the pixels of positive prior weight (a Gaussian
    residual's length has a chi distribution, median ~ sigma sqrt(k (1 - 2 / 9k)^3), Wilson & Hilferty 1931)."""
    inliers = residual.flatten(-2).where(prior.flatten(-2) > 0, torch.nan)
    median_per_sigma = (dims * (1 - 2 / (9 * dims)) ** 3) ** 0.5
    scale = (inliers.nanmedian(dim=-1).values / median_per_sigma).nan_to_num(MIN_SCALE).clamp(min=MIN_SCALE)
    return (1 - (residual / (widen * TUKEY_C * scale[..., None, None])).square()).clamp(min=0).square()


def robust_fit_affine(flow: Tensor, weights: Tensor | None = None, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """Affine motion [.., 2, 3] of the dominant (background) motion of a flow by iteratively reweighted least
    squares with Tukey's biweight on the residual length (Holland & Welsch 1977; scale from the median residual
    length), and the final weights [.., H, W] in [0, 1] (0 on pixels that move otherwise: objects). `weights`
    restricts the fit (e.g. to visible pixels)."""
    _check_flow(flow)
    prior = flow.new_ones(flow.shape[:-3] + flow.shape[-2:]) if weights is None else weights.to(flow.dtype)
    current = prior
    for _ in range(iterations):
        matrix = fit_affine(flow, current)
        current = prior * _tukey_weights((flow - affine_flow(matrix, *flow.shape[-2:])).norm(dim=-3), prior, 2)
    return fit_affine(flow, current), current


def decompose_motion(flow: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Split a flow [.., 2, H, W] into camera motion (its robust global affine fit) and object motion (the
    residual): (camera_flow, object_flow), which sum to the flow (chapter 11.3, global + local motion)."""
    matrix, _ = robust_fit_affine(flow, weights)
    camera = affine_flow(matrix, *flow.shape[-2:])
    return camera, flow - camera


def align_affine(first: Tensor, second: Tensor, matrix: Tensor, weights: Tensor | None = None,
                 iterations: int = 10) -> Tensor:
    """Refine affine motions [N, 2, 3] from images `first` to `second` [N, C, H, W] by Gauss-Newton on brightness
    constancy first(p) = second(p + flow(p)) over the weighted pixels [N, H, W] that stay in view (direct parametric
    alignment: Lucas & Kanade 1981, Bergen et al. 1992). Start it within a pixel or two, e.g. from a flow fit.
    Pixels are also weighed by Tukey's biweight of their brightness residual, so pixels that move otherwise
    (objects) drop out; its cut-off starts 8x wider and halves each iteration down to the usual one (graduated
    non-convexity, Black & Anandan 1996), else a rough start would drop the pixels that tell the most: those far
    from the centre under a zoom or a roll. The residual scale comes from pixels with structure in either image:
    flat ones (a black background) fit any motion with no residual and would shrink the cut-off to nothing."""
    _check_matrix(matrix)
    if first.ndim != 4 or first.shape != second.shape or matrix.shape != (first.shape[0], 2, 3):
        raise KinemaError(f"affine alignment needs images [N, C, H, W] of one shape and matrices [N, 2, 3], got "
                          f"{tuple(first.shape)}, {tuple(second.shape)} and {tuple(matrix.shape)}")
    count, _, height, width = first.shape
    eye = torch.eye(6, device=first.device, dtype=first.dtype)
    grid = centred_grid(height, width, first.device, first.dtype)
    coords = torch.cat([grid, torch.ones_like(grid[:1])])  # [3, H, W]: d flow_x / d (row 0 of [A | b])
    grad_y, grad_x = torch.gradient(second, dim=(-2, -1))
    prior = first.new_ones(count, height, width) if weights is None else weights.to(first.dtype)
    first_slope = torch.stack(torch.gradient(first, dim=(-2, -1))).norm(dim=(0, 2))  # [N, H, W]
    for iteration in range(iterations):
        flow = affine_flow(matrix, height, width)
        warped, warped_x, warped_y = warp(torch.cat([second, grad_x, grad_y], dim=1), flow).chunk(3, dim=1)
        jacobian = torch.cat([warped_x[:, :, None] * coords, warped_y[:, :, None] * coords], dim=2)  # [N, C, 6, H, W]
        residual = warped - first  # [N, C, H, W]
        structured = torch.maximum(first_slope, torch.stack([warped_x, warped_y]).norm(dim=(0, 2))) > FLAT_GRADIENT
        robust = _tukey_weights(residual.norm(dim=1), prior * structured, first.shape[1],
                                widen=2.0 ** max(0, 3 - iteration))
        seen = prior * inside_frame(flow).to(first.dtype) * robust
        normal = torch.einsum("ncihw,ncjhw,nhw->nij", jacobian, jacobian, seen)
        damping = LM_DAMPING * normal.diagonal(dim1=-2, dim2=-1).mean(-1).clamp(min=1e-12)  # Levenberg-Marquardt
        normal = normal + damping[:, None, None] * eye
        rhs = torch.einsum("ncihw,nchw,nhw->ni", jacobian, residual, seen)
        matrix = matrix - torch.linalg.solve(normal, rhs).view(count, 2, 3)
    return matrix
