"""Frame tasks (kinema.diffusion.frame_tasks): each task gives the pixels and levels it promises, draws depend only on
each sample's generator, and training with them teaches a frame-conditioned model to use the given frames."""

import pytest
import torch

from kinema.diffusion.frame_tasks import FRAME_TASKS, draw_frame_task, draw_frame_tasks
from kinema.errors import KinemaError

T, H, W = 8, 12, 16


def draws(name: str, count: int = 40):
    return [draw_frame_task(name, T, H, W, torch.Generator().manual_seed(i)) for i in range(count)]


def whole(known):
    return known.flatten(2).all(dim=2)[0]  # [T]: frames given entirely


def test_frame_tasks_give_what_they_promise():
    for known, levels in draws("none"):
        assert not known.any() and levels is None
    for known, _ in draws("first"):
        assert whole(known).tolist() == [True] + [False] * (T - 1)
    for known, _ in draws("last"):
        assert whole(known).tolist() == [False] * (T - 1) + [True]
    prefixes = set()
    for known, _ in draws("prefix"):
        k = int(whole(known).sum())
        assert 1 <= k < T and whole(known)[:k].all() and not whole(known)[k:].any()
        prefixes.add(k)
    assert len(prefixes) > 3
    for known, _ in draws("sparse"):
        given = whole(known).nonzero().flatten()
        assert len(given) >= 1 and len(set(given.diff().tolist())) <= 1 and len(given) < T
    for known, _ in draws("keyframes"):
        assert 2 <= int(whole(known).sum()) <= T // 2 and known.flatten(2).all(2).eq(known.flatten(2).any(2)).all()
    for known, _ in draws("box"):
        hole = ~known[0]
        frames = hole.flatten(1).any(1).nonzero().flatten()
        assert len(frames) >= 1 and frames.diff().eq(1).all()  # consecutive frames
        rows, cols = hole.any(0).any(1).nonzero().flatten(), hole.any(0).any(0).nonzero().flatten()
        assert hole[frames[0]].sum() == len(rows) * len(cols) and hole[frames[0]].sum() < H * W  # one box
    for known, _ in draws("outpaint"):
        frame = known[0, 0]
        assert frame[H // 2, W // 2] and torch.equal(known[0], frame.expand(T, H, W))


def test_level_tasks_set_levels_and_give_nothing():
    for known, levels in draws("forcing"):
        assert not known.any() and levels.shape == (T,) and 0 <= levels.min() and levels.max() < 1
    assert len({tuple(levels.tolist()) for _, levels in draws("forcing")}) == 40
    for known, levels in draws("diagonal"):
        steps = levels.diff()
        assert not known.any() and (steps > 0).all() and torch.allclose(steps, steps[0].expand_as(steps))
        assert 0 < levels[0] and levels[-1] <= 1


def test_a_batch_draws_each_sample_from_its_own_generator():
    shape = torch.Size([3, 3, T, H, W])
    generators = [torch.Generator().manual_seed(s) for s in (4, 5, 6)]
    known, levels = draw_frame_tasks(FRAME_TASKS, shape, generators)
    alone, alone_levels = draw_frame_tasks(FRAME_TASKS, torch.Size([1, 3, T, H, W]), [torch.Generator().manual_seed(5)])
    assert known.shape == (3, 1, T, H, W) and levels.shape == (3, T)
    assert torch.equal(known[1:2], alone)
    torch.testing.assert_close(levels[1:2], alone_levels, equal_nan=True)


def test_unknown_task_is_named():
    with pytest.raises(KinemaError, match="unknown frame task 'later'"):
        draw_frame_task("later", T, H, W, torch.Generator())
