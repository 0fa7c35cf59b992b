"""Chunked causal encode / decode equal the one-shot results; spatial tiles blend without seams."""

import itertools

import pytest
import torch

from kinema.autoencoder import CausalVAEConfig, CausalVideoVAE, Tiling, decode_chunked, encode_chunked, iter_decode, \
    iter_encode, iter_reconstruct
from kinema.autoencoder.streaming import _Tiled, frame_chunks
from kinema.errors import KinemaError


def tiny_vae(**overrides) -> CausalVideoVAE:
    torch.manual_seed(0)
    return CausalVideoVAE(CausalVAEConfig(**{"channels": 8, "channel_mult": (1, 2), "norm_groups": 4,
                                             **overrides})).eval()


@pytest.mark.parametrize("k,chunk", [(1, 3), (2, 1), (4, 1), (4, 2), (4, 5)])
def test_chunked_encode_and_decode_equal_the_one_shot_results(k, chunk):
    vae = tiny_vae(temporal_downsample=k)
    video = torch.rand(2, 3, 1 + 5 * k, 16, 16) * 2 - 1
    with torch.no_grad():
        posterior = vae.encode(video)
        decoded = vae.decode(posterior.mean)
    chunked = encode_chunked(vae, video, chunk_latent_frames=chunk)
    torch.testing.assert_close(chunked.mean, posterior.mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked.logvar, posterior.logvar, atol=1e-5, rtol=0)
    torch.testing.assert_close(decode_chunked(vae, posterior.mean, chunk), decoded, atol=1e-5, rtol=0)
    sizes = [len(range(a, min(a + chunk, 6))) for a in range(0, 6, chunk)]  # latent frames per chunk
    expected = [1 + k * (sizes[0] - 1)] + [k * n for n in sizes[1:]]
    assert [piece.shape[2] for piece in iter_decode(vae, posterior.mean, chunk)] == expected


def test_frames_may_come_one_by_one_or_in_pieces_of_any_length():
    vae = tiny_vae()
    video = torch.rand(1, 3, 21, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = vae.encode(video).mean
    frames = iter(video[0].unbind(1))  # [3, H, W] each
    torch.testing.assert_close(encode_chunked(vae, frames, 2).mean, expected, atol=1e-5, rtol=0)
    pieces = [video[:, :, a:b] for a, b in [(0, 3), (3, 4), (4, 13), (13, 21)]]
    torch.testing.assert_close(encode_chunked(vae, pieces, 1).mean, expected, atol=1e-5, rtol=0)
    latent_pieces = [expected[:, :, :2], expected[:, :, 2:]]
    with torch.no_grad():
        torch.testing.assert_close(decode_chunked(vae, latent_pieces, 3), vae.decode(expected), atol=1e-5, rtol=0)


def test_reconstruction_stream_pairs_each_chunk_with_its_reconstruction():
    vae = tiny_vae()
    video = torch.rand(1, 3, 13, 16, 16) * 2 - 1
    pairs = list(iter_reconstruct(vae, video, chunk_latent_frames=1))
    assert [original.shape[2] for original, _ in pairs] == [5, 4, 4]
    torch.testing.assert_close(torch.cat([original for original, _ in pairs], 2), video)
    with torch.no_grad():
        expected = vae.decode(vae.encode(video).mode())
    torch.testing.assert_close(torch.cat([rec for _, rec in pairs], 2), expected, atol=1e-5, rtol=0)


def test_the_stream_is_read_lazily_so_any_length_fits_in_memory():
    vae = tiny_vae()
    endless = (torch.rand(3, 16, 16) * 2 - 1 for _ in itertools.count())
    chunks = list(itertools.islice(iter_encode(vae, endless, chunk_latent_frames=2), 3))
    assert [c.mean.shape[2] for c in chunks] == [3, 2, 2]


def test_a_tail_that_is_no_whole_group_is_an_error_or_trimmed():
    vae = tiny_vae()
    video = torch.rand(1, 3, 11, 16, 16) * 2 - 1
    with pytest.raises(KinemaError, match="needs 1 \\+ k\\*n frames with k=4, got 11 frames"):
        encode_chunked(vae, video, 1)
    trimmed = list(iter_encode(vae, video, 1, trim=True))
    assert sum(c.mean.shape[2] for c in trimmed) == 3  # frames 0..8 kept, 9..10 dropped
    assert [c.shape[2] for c in frame_chunks(torch.zeros(1, 3, 3, 4, 4), 4, 2, trim=True)] == [1]
    with pytest.raises(KinemaError, match="no frames"):
        encode_chunked(vae, iter([]), 1)
    with pytest.raises(KinemaError, match="chunk_latent_frames must be at least 1"):
        encode_chunked(vae, video, 0)


def test_tiles_reassemble_a_pointwise_map_exactly():
    """The blend weights sum to one everywhere: a map that reads each pixel alone comes back unchanged."""
    video = torch.rand(1, 3, 2, 40, 56)
    tiled = _Tiled(Tiling(16, 8), Tiling(16, 8), 40, 56, factor=1)
    assert len(tiled.tiles) == 4 * 6
    torch.testing.assert_close(tiled(lambda x, state: [2 * x], video)[0], 2 * video)


def _seam_jump(error: torch.Tensor, columns: list[int]) -> float:
    """How much the column means of a tiled result's error jump at the given columns, over the median jump: each
    tile has its own error (its own frame statistics and borders), so a hard tile edge is a step in it."""
    means = error.mean(dim=(0, 1, 2, 3))
    steps = (means[1:] - means[:-1]).abs()
    edges = torch.tensor(columns) - 1
    rest = torch.ones(len(steps), dtype=torch.bool)
    rest[edges] = False
    return (steps[edges].max() / steps[rest].median()).item()


def test_tiled_decoding_is_close_to_the_whole_frame_and_seam_free():
    vae = tiny_vae()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 96), torch.linspace(-1, 1, 96), indexing="ij")
    video = torch.stack([torch.sin(3 * xx + t) * torch.cos(2 * yy) for t in range(5)])[None, None].repeat(1, 3, 1, 1, 1)
    with torch.no_grad():
        z = vae.encode(video).mean
        whole = vae.decode(z)
    blended = decode_chunked(vae, z, 1, Tiling(64, 32))
    hard = decode_chunked(vae, z, 1, Tiling(48, 0))  # tiles side by side, no overlap: seams at column 48
    assert blended.shape == whole.shape
    assert (blended - whole).abs().mean() < 0.6 * (hard - whole).abs().mean()
    assert _seam_jump(hard - whole, [48]) > 5.0  # the check sees a seam where there is one
    assert _seam_jump(blended - whole, [32, 64]) < 2.0  # edges of the blended tiles: no step
    assert torch.equal(decode_chunked(vae, z, 1, Tiling(96, 32)), decode_chunked(vae, z, 1))  # one tile: whole


def test_tiled_encoding_blends_latent_tiles_and_equals_untiled_for_one_tile():
    vae = tiny_vae()
    video = torch.rand(1, 3, 5, 64, 80) * 2 - 1
    with torch.no_grad():
        whole = vae.encode(video)
    tiled = encode_chunked(vae, video, 1, Tiling(32, 16))
    assert tiled.mean.shape == whole.mean.shape and torch.isfinite(tiled.mean).all()
    assert (tiled.mean - whole.mean).abs().mean() < whole.mean.abs().mean()
    torch.testing.assert_close(encode_chunked(vae, video, 1, Tiling(80, 16)).mean, whole.mean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size,overlap", [(30, 8), (32, 6), (32, 32), (0, 0)])
def test_bad_tilings_are_one_line_errors(size, overlap):
    with pytest.raises(KinemaError, match="multiples of 4 with 0 <= overlap < size"):
        encode_chunked(tiny_vae(), torch.zeros(1, 3, 5, 16, 16), 1, Tiling(size, overlap))


def load_benchmark():
    """benchmarks/autoencoder.py as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "autoencoder.py"
    spec = importlib.util.spec_from_file_location("autoencoder_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_benchmark_streams_each_length_and_scores_a_checkpoint(tmp_path, monkeypatch):
    import json

    from kinema.autoencoder import save_autoencoder

    bench = load_benchmark()
    monkeypatch.setattr(bench, "in_fresh_process", bench.stream)  # no spawned interpreters in a test
    save_autoencoder(tmp_path / "vae", tiny_vae())
    report = bench.main(["--checkpoint", str(tmp_path / "vae"), "--frames", "5", "13", "--size", "32", "--chunk", "1",
                         "--clips", "1", "--clip-frames", "5", "--datasets", "balls", "camera",
                         "--json", str(tmp_path / "report.json")])
    assert [row["frames"] for row in report["streaming"]] == [5, 13]
    assert all(row["enc_ms_per_frame"] > 0 and row["dec_ms_per_frame"] > 0 for row in report["streaming"])
    assert set(report["quality"]) == {"balls", "camera"}
    assert all(0 < row["psnr"] < 100 and row["flicker_original"] > 0 for row in report["quality"].values())
    assert all(0 < row["psnr_background"] < 100 for row in report["quality"].values())
    assert json.loads((tmp_path / "report.json").read_text())["peak_ratio"] == report["peak_ratio"]


def test_the_benchmark_floor_is_the_background_alone():
    """The floor is the background alone: black for the balls (at radii scaled with the size), the per-channel
    median for textures."""
    from kinema.metrics.frame import psnr

    bench = load_benchmark()
    args = bench.parse_args(["--size", "64", "--clip-frames", "5"])
    config = bench.quality_config("balls", args)
    assert config.radius_range == (6.0, 9.0)  # the 32x32 set's radii, doubled at 64x64
    clip = bench.build_dataset("balls", config, seed=3)[0]["video"][None]
    floor = bench.background(clip)
    torch.testing.assert_close(floor, torch.full_like(clip, -1.0))
    assert psnr(floor, clip).item() < 30
    textured = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    torch.testing.assert_close(bench.background(textured)[0, :, 0, 0, 0],
                               textured[0].flatten(1).median(dim=1).values)
