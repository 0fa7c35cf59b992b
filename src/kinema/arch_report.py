"""The architecture report behind `kinema arch` (chapter 11.2, exercise 11.2): every family of the zoo at the
same width on the same input — parameters, forward+backward FLOPs, memory and step time — as a table,
JSON, an optional PNG chart and the Markdown page committed in the docs.

FLOPs come from torch's `FlopCounterMode`: matmuls, convolutions and attention (including the CPU attention
kernel, which torch does not count by itself); elementwise ops are not counted. Memory: on CUDA the
allocator's peak during one training step; on CPU, which has no allocator statistics, an estimate =
parameters + gradients + the activations autograd saves for backward (counted once per storage), the part
of a step's peak that differs between architectures.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from kinema.atomic import atomic_path, write_text_atomic
from kinema.conditioning.conditioning import Conditioning
from kinema.config import dataclass_from_dict
from kinema.errors import KinemaError
from kinema.models.registry import MODELS

TEXT_DIM, TEXT_TOKENS = 64, 8  # the same random "text" for every variant


@dataclass(frozen=True)
class Variant:
    """One architecture of the grid: a registered model and its config fields (`{w}` = the shared width)."""

    name: str
    family: str
    model_name: str
    fields: dict

    def config(self, width: int):
        """The model's config dataclass at `width`."""
        def resolve(value):
            if isinstance(value, tuple):
                return tuple(resolve(v) for v in value)
            return width * value.factor if isinstance(value, Width) else value

        values = {k: resolve(v) for k, v in self.fields.items()}
        return dataclass_from_dict(MODELS[self.model_name].config_class, values, f"variant {self.name}")


@dataclass(frozen=True)
class Width:
    """A config value that is `factor` times the shared width."""

    factor: int = 1


W, W2 = Width(1), Width(2)
_UNET = {"channels": W, "channel_mult": (1, 2), "patch_size": 2, "heads": 4, "norm_groups": 8, "text_dim": TEXT_DIM,
         "attention": ("temporal", "spatial")}
_DIT = {"hidden_size": W2, "depth": 4, "heads": 4, "patch_size": (1, 2, 2), "text_dim": TEXT_DIM}


def _unet(name: str, family: str, **fields) -> Variant:
    return Variant(name, family, "video_unet", {**_UNET, **fields})


def _dit(name: str, **fields) -> Variant:
    return Variant(name, "video dit", "video_dit", {**_DIT, **fields})


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    _unet("unet-factorized", "convolution"),
    _unet("unet-full3d", "convolution", conv="full3d"),
    _unet("unet-p3d-a", "convolution", conv="p3d_a"),
    _unet("unet-p3d-b", "convolution", conv="p3d_b"),
    _unet("unet-p3d-c", "convolution", conv="p3d_c"),
    _unet("unet-depthwise3d", "convolution", conv="depthwise3d"),
    _unet("attn-serial", "attention", attention=("spatial", "spatial")),
    _unet("attn-joint", "attention", attention=("joint", "joint")),
    _unet("attn-parallel", "attention", attention=("parallel", "parallel")),
    _unet("attn-interleaved", "attention", attention=("interleaved", "interleaved")),
    _unet("attn-axial", "attention", attention=("axial", "axial")),
    _unet("attn-windowed", "attention", attention=("windowed", "windowed"), window=(4, 4, 4),
          window_overlap=(1, 1, 1), global_tokens=4),
    _unet("attn-causal", "attention", attention=("spatial", "spatial"), temporal_mask="causal"),
    _unet("attn-local-k2", "attention", attention=("spatial", "spatial"), temporal_window=2),
    _unet("attn-multiscale", "attention", attention=("spatial", "spatial"), temporal_scales=(1, 4, 0)),
    _unet("rnn-convgru", "propagation", recurrent="convgru"),
    _unet("rnn-convlstm-bi", "propagation", recurrent="convlstm", bidirectional=True),
    _unet("rnn-gated-residual", "propagation", recurrent="gated_residual"),
    _unet("pyramid-t2", "temporal pyramid", temporal_downsample=(True,)),
    _dit("dit-factorized"),
    _dit("dit-full", attention="full"),
    _dit("dit-cube-2x2x2", patch_size=(2, 2, 2)),
    _dit("dit-rope3d", positions="rope3d"),
    _dit("dit-learned-pos", positions="learned"),
    _dit("dit-full-pruned", attention="full", prune_static=0.5),
    Variant("inflated-unet2d", "inflated 2d", "inflated_unet",
            {"block_out_channels": (W, W2), "norm_num_groups": 8, "text_dim": TEXT_DIM, "attention_head_dim": 8}),
    Variant("inflated-frozen-2d", "inflated 2d", "inflated_unet",
            {"block_out_channels": (W, W2), "norm_num_groups": 8, "text_dim": TEXT_DIM, "attention_head_dim": 8,
             "freeze_2d": True}),
]}


@dataclass
class ArchResult:
    """The measurements of one variant."""

    name: str
    family: str
    model: str
    parameters: int
    trainable: int
    gflops: float          # forward + backward
    activation_mb: float   # saved for backward
    peak_mb: float         # CUDA: measured peak; CPU: parameters + gradients + activations
    step_ms: float         # median forward + backward time


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's counter knows the CUDA attention kernels but not the CPU one that SDPA dispatches to
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
                  torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops}


def _saved_activation_bytes(step) -> int:
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(storages.values())


def measure(variant: Variant, width: int, shape: tuple[int, ...], repeats: int, device: str, seed: int = 0
            ) -> ArchResult:
    """Build `variant` at `width` and time / count one training step (forward + backward) on a seeded input."""
    torch.manual_seed(seed)
    model = MODELS[variant.model_name](variant.config(width)).to(device).train()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).to(device)
    t = torch.rand(shape[0], generator=generator).to(device)
    cond = Conditioning(text=torch.randn(shape[0], TEXT_TOKENS, TEXT_DIM, generator=generator)).to(device)

    def step():
        model.zero_grad(set_to_none=True)
        model(x, t, cond).square().mean().backward()

    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        step()  # also the warm-up of the timed steps
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    activations = _saved_activation_bytes(step)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = 4 * (parameters + trainable) + activations
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return ArchResult(variant.name, variant.family, variant.model_name, parameters, trainable,
                      counter.get_total_flops() / 1e9, activations / 2**20, peak / 2**20,
                      1000 * statistics.median(times))


def run_report(names: list[str] | None = None, width: int = 32, frames: int = 8, size: int = 32, batch: int = 2,
               repeats: int = 3, device: str = "cpu", progress=None) -> dict:
    """Measure the named variants (default: all of VARIANTS) -> {'setup': ..., 'results': [...]}."""
    names = names or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise KinemaError(f"unknown architecture variant(s) {', '.join(unknown)} (see kinema arch --list)")
    if min(width, frames, size, batch, repeats) < 1:
        raise KinemaError("--width, --frames, --size, --batch and --repeats must be at least 1")
    shape = (batch, 3, frames, size, size)
    results = []
    for name in names:
        if progress:
            progress(name)
        try:
            results.append(measure(VARIANTS[name], width, shape, repeats, device))
        except KinemaError as error:  # a shape or size this variant cannot take
            raise KinemaError(f"variant {name} at width {width} on input {list(shape)}: "
                              f"{str(error).splitlines()[0]}") from None
    setup = {"input": list(shape), "width": width, "repeats": repeats, "device": device,
             "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or
             platform.machine()}
    return {"setup": setup, "results": [asdict(r) for r in results]}


def markdown_table(report: dict) -> str:
    """The results as a Markdown table."""
    lines = ["| variant | family | parameters | trainable | GFLOPs (fwd+bwd) | activations MB | peak MB | step ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['name']} | {r['family']} | {r['parameters']:,} | {r['trainable']:,} | {r['gflops']:.2f} "
                     f"| {r['activation_mb']:.1f} | {r['peak_mb']:.1f} | {r['step_ms']:.0f} |")
    return "\n".join(lines)


def write_json(report: dict, path: str | Path) -> Path:
    """Write the report as JSON (atomically)."""
    write_text_atomic(path, json.dumps(report, indent=2))
    return Path(path)


def write_markdown(report: dict, path: str | Path, command: str) -> Path:
    """Write the docs page: what was measured, how to reproduce it, and the table."""
    setup = report["setup"]
    memory = ("peak allocated by CUDA during a step" if setup["device"].startswith("cuda") else
              "estimate: parameters + gradients + activations saved for backward (CPU has no allocator peak)")
    text = f"""# Architectures

Kinema's denoisers side by side (chapter 11.2): every family at the same width on the same input.
Each is a config choice of `video_unet`, `video_dit` or `inflated_unet` (see the variants in
`kinema.arch_report.VARIANTS` for the exact config fields), trains with `kinema train` and samples
with `kinema sample`.

Choosing one (YAML keys under `model:`, or `key=value` overrides of `kinema train`):

| family (chapter) | config (choices separated by /) |
|---|---|
| convolutions (11.2.1, .6) | `name: video_unet`, `conv: factorized / full3d / p3d_a / p3d_b / p3d_c / depthwise3d` |
| attention (11.2.2) | `attention: [<per level>]` `none / temporal / spatial / joint / parallel / interleaved / axial` |
| windowed attention (11.2.2) | `attention: [windowed, ...]`, `window: [Tb,Hb,Wb]`, `window_overlap`, `global_tokens` |
| temporal masks (11.2.3) | `temporal_mask: bidirectional / causal`, `temporal_window: k` |
| multi-scale temporal heads (11.2.4) | `temporal_scales: [local, medium, 0]` (0 = global) |
| propagation (11.2.3) | `recurrent: convgru / convlstm / gated_residual`, `bidirectional: true` |
| temporal pyramid (11.2.4) | `temporal_downsample: [true, false, ...]` (one per down step) |
| Video DiT (11.2.5) | `name: video_dit`, `preset: S/2, B/4, L/2x2x2, ...` or `patch_size`, `hidden_size`, `depth` |
| Video DiT choices | `attention: factorized / full`, `positions: sincos / learned / rope3d`, `prune_static: 0.5` |
| inflated 2D (11.2.6) | `name: inflated_unet`, `base: unet2d_condition / unet2d`, `pretrained: <dir>`, `freeze_2d` |

Regenerate this page with:

```
{command}
```

Input `{setup['input']}` (B, C, T, H, W), width {setup['width']}, device `{setup['device']}`
(torch threads: {setup['threads']}, torch {setup['torch']}); step time is the median of {setup['repeats']}
forward + backward passes. FLOPs are counted by `torch.utils.flop_counter` (matmuls, convolutions, attention).
Memory: {memory}.

{markdown_table(report)}
"""
    write_text_atomic(path, text)
    return Path(path)


def write_plot(report: dict, path: str | Path) -> Path:
    """A PNG with one horizontal bar chart per measurement, bars coloured by family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    families = sorted({r["family"] for r in results})
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    names = [r["name"] for r in results]
    figure, axes = plt.subplots(1, 4, figsize=(18, 0.3 * len(results) + 2), sharey=True)
    for ax, (key, scale, label) in zip(axes, [("parameters", 1e-6, "parameters (M)"), ("gflops", 1, "GFLOPs fwd+bwd"),
                                              ("peak_mb", 1, "peak memory MB"), ("step_ms", 1, "step ms")]):
        ax.barh(names, [scale * r[key] for r in results], color=[colours[r["family"]] for r in results])
        ax.set_title(label)
    axes[0].invert_yaxis()  # first variant on top (the axes share y)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[f]) for f in families]
    figure.legend(handles, families, loc="lower center", ncol=len(families))
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return Path(path)
