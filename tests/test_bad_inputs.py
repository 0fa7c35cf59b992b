"""Every bad input to `kinema` is one clean line: exit code 2, one stderr line naming the key/file, no traceback.

The table covers each command (train, sample, generate, info, export, prep, eval, arch) and every config section
(types, ranges, choices, paths, combinations); most cases fail in validation, before any work starts.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model

runner = CliRunner()


def invoke(args: list[str]):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean(result, needle: str, after_work: bool = False) -> None:
    """Exit code 2, one non-empty stderr line starting 'error:' that contains `needle`, no traceback anywhere
    (`after_work`: progress bars, which redraw with carriage returns, may come before it)."""
    lines = [line for line in result.stderr.split("\n") if line.strip() and not (after_work and line[0] == "\r")]
    shown = f"exit {result.exit_code}, stderr {result.stderr!r}, exception {result.exception!r}"
    assert result.exit_code == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert needle in lines[0], f"{needle!r} not named: {shown}"
    assert "Traceback" not in result.stderr + result.stdout


class Files:
    """Inputs made once per module: a tiny model, broken copies of it, YAML files, videos, plain files."""

    def __init__(self, root: Path):
        self.root = root
        config = load_config(None, TINY_OVERRIDES)
        torch.manual_seed(0)
        self.model = save_pretrained(root / "model", build_model(config.model_name, config.model), config,
                                     {"step": 3})
        self.file = root / "notes.txt"
        self.file.write_text("a user's notes\n")
        self.empty = root / "empty"
        self.empty.mkdir()

    def path(self, name: str) -> Path:
        return self.root / name

    def text(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def broken_model(self, name: str, config: str | bytes | None = None, weights: bytes | None = None,
                     ema_folder: bool = False, drop: str | None = None) -> Path:
        """A copy of the tiny model with its config.json / model.safetensors replaced, a file dropped, or a folder
        named ema.safetensors."""
        path = self.root / name
        if not path.exists():
            path.mkdir()
            for file in self.model.iterdir():
                if file.name != drop:
                    (path / file.name).write_bytes(file.read_bytes())
            if config is not None:
                (path / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
            if weights is not None:
                (path / "model.safetensors").write_bytes(weights)
            if ema_folder:
                (path / "ema.safetensors").mkdir()
        return path

    def model_config(self, **changes) -> str:
        values = json.loads((self.model / "config.json").read_text())
        for dotted, value in changes.items():
            section, key = dotted.split("__")
            values["kinema"][section][key] = value
        return json.dumps(values)

    def videos(self) -> Path:
        """A folder with two short clips encoded here with PyAV."""
        from kinema.video import write_video

        folder = self.root / "videos"
        if not folder.exists():
            folder.mkdir()
            for i in range(2):
                write_video(folder / f"clip{i}.mp4", torch.rand(3, 8, 32, 32) * 2 - 1, fps=8)
        return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return Files(tmp_path_factory.mktemp("bad_inputs"))


BALLS = "configs/balls.yaml"
DIT = "configs/balls_dit.yaml"


def train(*overrides):
    """`kinema train configs/balls.yaml OVERRIDES` (fails in config validation)."""
    return lambda f: ["train", BALLS, *overrides]


def train_with(name, text, *overrides):
    """`kinema train` on a YAML file written with `text`."""
    return lambda f: ["train", f.text(name, text), *overrides]


# (case id, argv builder, text the one error line must contain)
CASES = [
    # -- the command line itself ---------------------------------------------------------------------------
    ("unknown-command", lambda f: ["trian"], "trian"),
    ("unknown-option", lambda f: ["info", f.model, "--verbose"], "--verbose"),
    ("missing-argument", lambda f: ["info"], "checkpoint"),
    ("train-without-config", lambda f: ["train"], "config"),
    ("int-option-not-a-number", lambda f: ["generate", "x", "--steps", "many"], "--steps"),
    ("float-option-not-a-number", lambda f: ["generate", "x", "--guidance", "lots"], "--guidance"),
    ("flag-given-a-value", lambda f: ["train", BALLS, "--resume=maybe"], "--resume"),
    # -- config files ----------------------------------------------------------------------------------------
    ("config-missing", lambda f: ["train", f.path("nope.yaml")], "nope.yaml"),
    ("config-is-a-folder", lambda f: ["train", f.empty], "empty"),
    ("config-top-level-list", train_with("list.yaml", "- model\n- data\n"), "list.yaml"),
    ("config-top-level-scalar", train_with("scalar.yaml", "42\n"), "scalar.yaml"),
    ("config-unclosed-bracket", train_with("unclosed.yaml", "model:\n  channel_mult: [1, 2\n"), "unclosed.yaml"),
    ("config-bad-indent", train_with("indent.yaml", "model:\n  channels: 8\n   heads: 2\n"), "indent.yaml"),
    ("config-duplicate-key", train_with("dup.yaml", "train:\n  steps: 1\n  steps: 2\n"), "dup.yaml"),
    ("config-not-utf8", train_with("binary.yaml", b"\xff\xfe\x00\x01"), "binary.yaml"),
    ("config-python-tag", train_with("tag.yaml", "train:\n  steps: !!python/object:os.system x\n"), "tag.yaml"),
    ("config-section-not-mapping", train_with("section.yaml", "model: 3\n"), "model"),
    ("config-section-list", train_with("seclist.yaml", "train: [1, 2]\n"), "train"),
    ("config-unknown-section", train_with("section2.yaml", "trainer:\n  steps: 3\n"), "trainer"),
    ("config-missing-env", train_with("env.yaml", "train:\n  output_dir: ${oc.env:KINEMA_NOT_SET_ANYWHERE}\n"),
     "train.output_dir"),
    ("config-unknown-key-in-file", train_with("key.yaml", "model:\n  chanels: 8\n"), "model.chanels"),
    # -- key=value overrides --------------------------------------------------------------------------------
    ("override-without-equals", train("train.steps"), "train.steps"),
    ("override-unclosed-bracket", train("model.channel_mult=[1,2"), "model.channel_mult"),
    ("override-unclosed-brace", train("train={steps: 3"), "train="),
    ("override-list-for-section", train("train=[1]"), "train"),
    ("override-missing-interpolation", train("train.steps=${nope}"), "train.steps"),
    ("override-unknown-section", train("trian.steps=3"), "trian"),
    ("override-unknown-key", train("train.stepz=3"), "train.stepz"),
    # -- train.* ----------------------------------------------------------------------------------------------
    ("train.steps-word", train("train.steps=many"), "train.steps"),
    ("train.steps-zero", train("train.steps=0"), "train.steps"),
    ("train.steps-negative", train("train.steps=-10"), "train.steps"),
    ("train.steps-float", train("train.steps=1.5"), "train.steps"),
    ("train.batch_size-zero", train("train.batch_size=0"), "train.batch_size"),
    ("train.lr-zero", train("train.lr=0"), "train.lr"),
    ("train.lr-negative", train("train.lr=-1e-4"), "train.lr"),
    ("train.lr-inf", train("train.lr=.inf"), "train.lr"),
    ("train.lr-nan", train("train.lr=.nan"), "train.lr"),
    ("train.lr-word", train("train.lr=fast"), "train.lr"),
    ("train.lr_schedule", train("train.lr_schedule=linear"), "train.lr_schedule"),
    ("train.warmup_steps-negative", train("train.warmup_steps=-5"), "train.warmup_steps"),
    ("train.weight_decay-negative", train("train.weight_decay=-0.1"), "train.weight_decay"),
    ("train.grad_clip-negative", train("train.grad_clip=-1"), "train.grad_clip"),
    ("train.grad_clip-zero", train("train.grad_clip=0"), "train.grad_clip"),
    ("train.ema_decay-above-one", train("train.ema_decay=1.5"), "train.ema_decay"),
    ("train.ema_decay-negative", train("train.ema_decay=-0.1"), "train.ema_decay"),
    ("train.mixed_precision", train("train.mixed_precision=fp8"), "train.mixed_precision"),
    ("train.gradient_checkpointing-word", train("train.gradient_checkpointing=maybe"),
     "train.gradient_checkpointing"),
    ("train.caption_dropout-above-one", train("train.caption_dropout=1.5"), "train.caption_dropout"),
    ("train.caption_dropout-negative", train("train.caption_dropout=-0.1"), "train.caption_dropout"),
    ("train.text_encoder-empty", train("train.text_encoder=''"), "train.text_encoder"),
    ("train.seed-negative", train("train.seed=-1"), "train.seed"),
    ("train.num_workers-negative", train("train.num_workers=-2"), "train.num_workers"),
    ("train.log_every-zero", train("train.log_every=0"), "train.log_every"),
    ("train.sample_every-negative", train("train.sample_every=-1"), "train.sample_every"),
    ("train.checkpoint_every-zero", train("train.checkpoint_every=0"), "train.checkpoint_every"),
    ("train.keep_checkpoints-zero", train("train.keep_checkpoints=0"), "train.keep_checkpoints"),
    ("train.output_dir-empty", train("train.output_dir=''"), "train.output_dir"),
    ("train.output_dir-null", train("train.output_dir=null"), "train.output_dir"),
    ("train.time_limit_minutes-negative", train("train.time_limit_minutes=-1"), "train.time_limit_minutes"),
    # -- diffusion.* ------------------------------------------------------------------------------------------
    ("diffusion.schedule", train("diffusion.schedule=zigzag"), "zigzag"),
    ("diffusion.shift-zero", train("diffusion.shift=0"), "diffusion.shift"),
    ("diffusion.shift-negative", train("diffusion.shift=-2"), "diffusion.shift"),
    ("diffusion.prediction", train("diffusion.prediction=score"), "diffusion.prediction"),
    ("diffusion.per_frame_noise-word", train("diffusion.per_frame_noise=sometimes"), "diffusion.per_frame_noise"),
    # -- sample.* ---------------------------------------------------------------------------------------------
    ("sample.sampler", train("sample.sampler=magic"), "sample.sampler"),
    ("sample.steps-zero", train("sample.steps=0"), "sample.steps"),
    ("sample.guidance-negative", train("sample.guidance=-1"), "sample.guidance"),
    ("sample.direction_guidance-negative", train("sample.direction_guidance=-0.5"), "sample.direction_guidance"),
    ("sample.fps-zero", train("sample.fps=0"), "sample.fps"),
    ("sample.prompts-empty", train("sample.prompts=[]"), "sample.prompts"),
    ("sample.prompts-not-list", train("sample.prompts=3"), "sample.prompts"),
    # -- model.* (video_unet) ---------------------------------------------------------------------------------
    ("model.name", train("model.name=transformer9000"), "model.name"),
    ("model.name-list", train("model.name=[a,b]"), "model.name"),
    ("model.heads-zero", train("model.heads=0"), "model.heads"),
    ("model.heads-negative", train("model.heads=-2"), "model.heads"),
    ("model.heads-not-dividing", train("model.heads=5"), "model.heads"),
    ("model.channels-zero", train("model.channels=0"), "model.channels"),
    ("model.channels-not-divisible", train("model.channels=30"), "model.channels"),
    ("model.channel_mult-zero", train("model.channel_mult=[0,2,2]"), "model.channel_mult"),
    ("model.channel_mult-vs-attention", train("model.channel_mult=[1,2]"), "model.attention"),
    ("model.attention-kind", train("model.attention=[none,bogus,joint]"), "bogus"),
    ("model.attention-not-list", train("model.attention=5"), "model.attention"),
    ("model.num_res_blocks-zero", train("model.num_res_blocks=0"), "model.num_res_blocks"),
    ("model.norm_groups-zero", train("model.norm_groups=0"), "model.norm_groups"),
    ("model.patch_size-zero", train("model.patch_size=0"), "model.patch_size"),
    ("model.temporal_kernel_size-zero", train("model.temporal_kernel_size=0"), "model.temporal_kernel_size"),
    ("model.in_channels-zero", train("model.in_channels=0"), "model.in_channels"),
    ("model.text_dim-negative", train("model.text_dim=-1"), "model.text_dim"),
    ("model.conv", train("model.conv=fancy"), "model.conv"),
    ("model.temporal_mask", train("model.temporal_mask=sideways"), "model.temporal_mask"),
    ("model.recurrent", train("model.recurrent=lstm"), "model.recurrent"),
    ("model.bidirectional-without-recurrent", train("model.bidirectional=true"), "model.bidirectional"),
    ("model.window-two-sizes", train("model.window=[2,4]"), "model.window"),
    ("model.temporal_window-negative", train("model.temporal_window=-1"), "model.temporal_window"),
    ("model.temporal_downsample-length", train("model.temporal_downsample=[true]"), "model.temporal_downsample"),
    ("model.unknown-key", train("model.widht=3"), "model.widht"),
    ("model.key-of-another-model", train("model.hidden_size=64"), "model.hidden_size"),
    # -- model.* (video_dit, diffusers_unet3d) ----------------------------------------------------------------
    ("dit.heads-zero", lambda f: ["train", DIT, "model.heads=0"], "model.heads"),
    ("dit.hidden_size-not-divisible", lambda f: ["train", DIT, "model.hidden_size=130"], "model.hidden_size"),
    ("dit.depth-zero", lambda f: ["train", DIT, "model.depth=0"], "model.depth"),
    ("dit.mlp_ratio-zero", lambda f: ["train", DIT, "model.mlp_ratio=0"], "model.mlp_ratio"),
    ("dit.patch_size-two", lambda f: ["train", DIT, "model.patch_size=[1,2]"], "model.patch_size"),
    ("dit.prune_static-above-one", lambda f: ["train", DIT, "model.prune_static=1.5"], "model.prune_static"),
    ("dit.preset", lambda f: ["train", DIT, "model.preset=XXL/9"], "model.preset"),
    ("dit.positions", lambda f: ["train", DIT, "model.positions=none"], "model.positions"),
    ("dit.attention", lambda f: ["train", DIT, "model.attention=sparse"], "model.attention"),
    ("unet3d.text_dim-zero", lambda f: ["train", "configs/balls_diffusers_unet3d.yaml", "model.text_dim=0"],
     "model.text_dim"),
    ("unet3d.block_types-length", lambda f: ["train", "configs/balls_diffusers_unet3d.yaml",
                                             "model.down_block_types=[DownBlock3D]"], "model.down_block_types"),
    # -- data.* (balls) ---------------------------------------------------------------------------------------
    ("data.kind", train("data.kind=imagenet"), "data.kind"),
    ("data.size-balls-do-not-fit", train("data.size=16"), "data"),
    ("data.size-zero", train("data.size=0"), "data.size"),
    ("data.num_frames-zero", train("data.num_frames=0"), "data.num_frames"),
    ("data.max_balls-above-colors", train("data.max_balls=99"), "max_balls"),
    ("data.min_balls-above-max", train("data.min_balls=3"), "min_balls"),
    ("data.radius_range-reversed", train("data.radius_range=[5.0,1.0]"), "data.radius_range"),
    ("data.radius_range-one-value", train("data.radius_range=[5.0]"), "data.radius_range"),
    ("data.colors-unknown", train("data.colors=[pink,red]"), "data.colors"),
    ("data.colors-repeated", train("data.colors=[red,red]"), "data.colors"),
    ("data.restitution-above-one", train("data.restitution=1.5"), "data.restitution"),
    ("data.friction-negative", train("data.friction=-1"), "data.friction"),
    ("data.fps-zero", train("data.fps=0"), "data.fps"),
    ("data.substeps-zero", train("data.substeps=0"), "data.substeps"),
    ("data.gravity-nan", train("data.gravity=.nan"), "data.gravity"),
    ("data.speed_range-reversed", train("data.speed_range=[30.0,10.0]"), "data.speed_range"),
    # -- data.* (digits, camera, folder, shards) ----------------------------------------------------------------
    ("digits.digit_size-too-big", train_with("digits.yaml", "data:\n  kind: digits\n", "data.digit_size=40"),
     "data"),
    ("digits.min_digits-zero", train_with("digits.yaml", "data:\n  kind: digits\n", "data.min_digits=0"), "data"),
    ("camera.motions", train_with("camera.yaml", "data:\n  kind: camera\n", "data.motions=[spin]"), "data.motions"),
    ("camera.texture", train_with("camera.yaml", "data:\n  kind: camera\n", "data.texture=plaid"), "data.texture"),
    ("folder.no-root-or-manifest", train_with("folder.yaml", "data:\n  kind: folder\n"), "data.root"),
    ("folder.sampling", train_with("folder.yaml", "data:\n  kind: folder\n", "data.root=videos",
                                   "data.sampling=bogus"), "data.sampling"),
    ("folder.flip-above-one", train_with("folder.yaml", "data:\n  kind: folder\n", "data.root=videos",
                                         "data.flip=2"), "data.flip"),
    ("folder.buckets-zero", train_with("folder.yaml", "data:\n  kind: folder\n", "data.root=videos",
                                       "data.buckets=[[0,4]]"), "data.buckets"),
    ("folder.stride-zero", train_with("folder.yaml", "data:\n  kind: folder\n", "data.root=videos",
                                      "data.stride=0"), "data.stride"),
    ("shards.no-urls", train_with("shards.yaml", "data:\n  kind: shards\n"), "data.urls"),
    # -- generate / sample --------------------------------------------------------------------------------------
    ("generate.sampler", lambda f: ["generate", "x", "-c", f.model, "--sampler", "magic"], "magic"),
    ("generate.format", lambda f: ["generate", "x", "-c", f.model, "--format", "avi"], "--format"),
    ("generate.suffix", lambda f: ["generate", "x", "-c", f.model, "-o", f.path("x.bmp")], ".bmp"),
    ("generate.scale-zero", lambda f: ["generate", "x", "-c", f.model, "--scale", "0"], "--scale"),
    ("generate.direction-negative", lambda f: ["generate", "x", "-c", f.model, "--direction-guidance", "-1"],
     "direction"),
    ("generate.time-grid", lambda f: ["generate", "x", "-c", f.model, "--time-grid", "wobbly"], "--time-grid"),
    ("generate.label-without-classes", lambda f: ["generate", "x", "-c", f.model, "--label", "3"], "label"),
    ("generate.height-zero", lambda f: ["generate", "x", "-c", f.model, "--height", "0"], "height"),
    ("generate.steps-zero", lambda f: ["generate", "x", "-c", f.model, "--steps", "0"], "steps"),
    ("generate.num-frames-zero", lambda f: ["generate", "x", "-c", f.model, "--num-frames", "0"], "num_frames"),
    ("generate.fps-zero", lambda f: ["generate", "x", "-c", f.model, "--fps", "0"], "--fps"),
    ("generate.guidance-negative", lambda f: ["generate", "x", "-c", f.model, "--guidance", "-1"], "--guidance"),
    ("generate.output-is-a-folder", lambda f: ["generate", "x", "-c", f.model, "-o", f.text("dir.mp4/x", "")
                                               .parent], "dir.mp4"),
    ("generate.sheet-under-a-file", lambda f: ["generate", "x", "-c", f.model, "--sheet", f.file / "s.png"],
     "notes.txt"),
    ("sample.steps-negative", lambda f: ["sample", f.model, "--steps", "-3"], "steps"),
    ("generate.device-tpu", lambda f: ["generate", "x", "-c", f.model, "--device", "tpu"], "--device"),
    ("generate.device-cuda-letter", lambda f: ["generate", "x", "-c", f.model, "--device", "cuda:x"], "--device"),
    ("generate.checkpoint-missing", lambda f: ["generate", "x", "-c", f.path("missing")], "missing"),
    ("generate.checkpoint-is-file", lambda f: ["generate", "x", "-c", f.file], "notes.txt"),
    ("generate.output-under-a-file", lambda f: ["generate", "x", "-c", f.model, "--steps", "1", "--scale", "1",
                                                "-o", f.file / "out.mp4"], "notes.txt"),
    ("sample.checkpoint-missing", lambda f: ["sample", f.path("missing")], "missing"),
    ("sample.checkpoint-empty-folder", lambda f: ["sample", f.empty], "config.json"),
    ("sample.device-tpu", lambda f: ["sample", f.model, "--device", "tpu"], "--device"),
    ("sample.corrupt-config", lambda f: ["sample", f.broken_model("bad_json", config="{not json")], "config.json"),
    # -- info -----------------------------------------------------------------------------------------------------
    ("info.missing", lambda f: ["info", f.path("missing")], "missing"),
    ("info.file", lambda f: ["info", f.file], "notes.txt"),
    ("info.no-config", lambda f: ["info", f.broken_model("no_config", drop="config.json")], "config.json"),
    ("info.config-not-json", lambda f: ["info", f.broken_model("bad_json", config="{not json")], "config.json"),
    ("info.config-not-utf8", lambda f: ["info", f.broken_model("bad_utf8", config=b"\xff\xfe{")], "config.json"),
    ("info.config-without-kinema", lambda f: ["info", f.broken_model("foreign", config='{"_class_name": "X"}')],
     "config.json"),
    ("info.config-list", lambda f: ["info", f.broken_model("json_list", config="[1, 2]")], "config.json"),
    ("info.config-unknown-key", lambda f: ["info", f.broken_model("old_key", config=f.model_config(
        model__widht=3))], "model.widht"),
    ("info.config-bad-value", lambda f: ["info", f.broken_model("bad_value", config=f.model_config(
        train__steps=0))], "train.steps"),
    ("info.weights-garbage", lambda f: ["info", f.broken_model("garbage", weights=b"garbage")], "model.safetensors"),
    ("info.weights-missing", lambda f: ["info", f.broken_model("no_weights", drop="model.safetensors")],
     "model.safetensors"),
    ("info.weights-other-shape", lambda f: ["info", f.broken_model("reshaped", config=f.model_config(
        model__channels=16))], "model.safetensors"),
    ("info.ema-is-a-folder", lambda f: ["info", f.broken_model("ema_folder", ema_folder=True)], "ema.safetensors"),
    # -- export ---------------------------------------------------------------------------------------------------
    ("export.checkpoint-missing", lambda f: ["export", f.path("missing"), f.path("out1")], "missing"),
    ("export.model-override", lambda f: ["export", f.model, f.path("out2"), "model.channels=4"], "model.channels"),
    ("export.bad-sample-override", lambda f: ["export", f.model, f.path("out3"), "sample.steps=0"], "sample.steps"),
    ("export.override-without-equals", lambda f: ["export", f.model, f.path("out4"), "sample.steps"],
     "sample.steps"),
    ("export.into-a-file", lambda f: ["export", f.model, f.file], "notes.txt"),
    ("export.into-a-users-folder", lambda f: ["export", f.model, f.text("users/photo.jpg", "jpeg").parent],
     "--force"),
    ("export.into-a-foreign-model", lambda f: ["export", f.model, f.text("hf/config.json", '{"a": 1}').parent,
                                               "--force"], "config.json"),
    ("export.into-a-checkpoint", lambda f: ["export", f.model, f.broken_model("ema_ckpt", ema_folder=True)],
     "ema.safetensors"),
    ("export.ema-is-a-folder", lambda f: ["export", f.broken_model("ema_folder", ema_folder=True), f.path("out5")],
     "ema.safetensors"),
    # -- prep -----------------------------------------------------------------------------------------------------
    ("prep.src-missing", lambda f: ["prep", f.path("no_videos"), f.path("prep1")], "no_videos"),
    ("prep.cut-threshold-below-one", lambda f: ["prep", f.empty, f.path("prep2"), "--cut-threshold", "0.5"],
     "--cut-threshold"),
    ("prep.cut-min-change-above-255", lambda f: ["prep", f.empty, f.path("prep3"), "--cut-min-change", "300"],
     "--cut-min-change"),
    ("prep.min-shot-negative", lambda f: ["prep", f.empty, f.path("prep4"), "--min-shot", "-1"], "--min-shot"),
    ("prep.brightness-reversed", lambda f: ["prep", f.empty, f.path("prep5"), "--min-brightness", "0.9",
                                            "--max-brightness", "0.1"], "brightness"),
    ("prep.workers-zero", lambda f: ["prep", f.empty, f.path("prep6"), "--workers", "0"], "--workers"),
    ("prep.out-is-a-file", lambda f: ["prep", f.videos(), f.file], "notes.txt"),
    # -- eval -----------------------------------------------------------------------------------------------------
    ("eval.real-missing", lambda f: ["eval", "--real", f.path("no_real"), "--fake", f.videos()], "no_real"),
    ("eval.fake-missing", lambda f: ["eval", "--real", f.videos(), "--fake", f.path("no_fake")], "no_fake"),
    ("eval.real-empty-folder", lambda f: ["eval", "--real", f.empty, "--fake", f.videos()], "empty"),
    ("eval.num-samples-one", lambda f: ["eval", "--real", f.videos(), "--fake", f.videos(), "-n", "1"],
     "--num-samples"),
    ("eval.features", lambda f: ["eval", "--real", f.videos(), "--fake", f.videos(), "--features", "bogus"],
     "--features"),
    ("eval.device-tpu", lambda f: ["eval", "--real", f.videos(), "--fake", f.videos(), "--device", "tpu"],
     "--device"),
    ("eval.real-is-a-checkpoint", lambda f: ["eval", "--real", f.model, "--fake", f.videos()], "checkpoint"),
    # -- arch -----------------------------------------------------------------------------------------------------
    ("arch.unknown-variant", lambda f: ["arch", "unet_magic"], "unet_magic"),
    ("arch.width-zero", lambda f: ["arch", "--width", "0"], "--width"),
    ("arch.frames-zero", lambda f: ["arch", "--frames", "0"], "--frames"),
    ("arch.size-negative", lambda f: ["arch", "--size", "-8"], "--size"),
    ("arch.batch-zero", lambda f: ["arch", "--batch", "0"], "--batch"),
    ("arch.repeats-zero", lambda f: ["arch", "--repeats", "0"], "--repeats"),
    ("arch.device-tpu", lambda f: ["arch", "--device", "tpu"], "--device"),
    ("arch.json-under-a-file", lambda f: ["arch", "--json", f.file / "arch.json"], "notes.txt"),
    ("arch.markdown-is-a-folder", lambda f: ["arch", "--markdown", f.empty], "empty"),
    # -- frame tasks: animate, predict, interpolate, inpaint, edit ------------------------------------------------
    ("animate.keyframe-beyond-the-length", lambda f: ["animate", "-c", f.model, "--keyframe",
                                                       f"9:{f.videos() / 'clip0.mp4'}"], "keyframe index 9"),
    ("animate.keyframe-without-index", lambda f: ["animate", "-c", f.model, "--keyframe", "a.png"], "--keyframe"),
    ("animate.nothing-to-animate", lambda f: ["animate", "-c", f.model], "--keyframe"),
    ("animate.image-missing", lambda f: ["animate", f.path("photo.png"), "-c", f.model], "photo.png"),
    ("animate.image-unreadable", lambda f: ["animate", f.file, "-c", f.model], "notes.txt"),
    ("predict.context-as-long-as-the-model", lambda f: ["predict", f.videos() / "clip0.mp4", "--context", "4",
                                                        "-c", f.model], "--context"),
    ("predict.frames-zero", lambda f: ["predict", f.videos() / "clip0.mp4", "--frames", "0", "-c", f.model],
     "--frames"),
    ("interpolate.factor-one", lambda f: ["interpolate", f.videos() / "clip0.mp4", "--factor", "1", "-c", f.model],
     "--factor"),
    ("interpolate.clip-unreadable", lambda f: ["interpolate", f.file, "-c", f.model], "notes.txt"),
    ("inpaint.no-hole-given", lambda f: ["inpaint", f.videos() / "clip0.mp4", "-c", f.model], "--mask"),
    ("inpaint.mask-and-box", lambda f: ["inpaint", f.videos() / "clip0.mp4", "--mask", f.videos() / "clip1.mp4",
                                        "--box", "0,0,4,4", "-c", f.model], "--box"),
    ("inpaint.mask-unreadable", lambda f: ["inpaint", f.videos() / "clip0.mp4", "--mask", f.file, "-c", f.model],
     "notes.txt"),
    ("inpaint.box-outside-the-clip", lambda f: ["inpaint", f.videos() / "clip0.mp4", "--box", "0,0,40,8",
                                                "-c", f.model], "0,0,40,8"),
    ("inpaint.box-not-numbers", lambda f: ["inpaint", f.videos() / "clip0.mp4", "--box", "a,b,c,d", "-c", f.model],
     "--box"),
    ("inpaint.pad-three-numbers", lambda f: ["inpaint", f.videos() / "clip0.mp4", "--pad", "1,2,3", "-c", f.model],
     "--pad"),
    ("inpaint.pad-negative", lambda f: ["inpaint", f.videos() / "clip0.mp4", "--pad", "-1,0,0,0", "-c", f.model],
     "pad"),
    ("edit.strength-above-one", lambda f: ["edit", f.videos() / "clip0.mp4", "a blue ball", "--strength", "1.5",
                                           "-c", f.model], "--strength"),
    ("edit.clip-missing", lambda f: ["edit", f.path("nothing.mp4"), "a blue ball", "-c", f.model], "nothing.mp4"),
]


class TrainingStarted(Exception):
    """Raised in place of training: the input was accepted."""


def _refuse_to_train(*args, **kwargs):
    raise TrainingStarted("the bad input was accepted and training would start")


@pytest.mark.parametrize("build,needle", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_clean_line(files, build, needle, monkeypatch):
    monkeypatch.setattr("kinema.training.trainer.Trainer", _refuse_to_train)
    assert_clean(invoke(build(files)), needle)


def test_the_table_is_large_and_covers_every_command():
    commands = {case[0].split(".")[0].split("-")[0] for case in CASES}
    assert len(CASES) >= 120
    assert {"generate", "sample", "info", "export", "prep", "eval", "arch", "train"} <= commands


def test_export_never_deletes_what_a_user_had(files):
    folder = files.root / "export_target"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"a user's photo")
    assert_clean(invoke(["export", files.model, folder]), "--force")
    assert sorted(p.name for p in folder.iterdir()) == ["photo.jpg"]

    result = invoke(["export", files.model, folder, "--force", "sample.steps=7"])
    assert result.exit_code == 0, result.stderr
    assert (folder / "photo.jpg").read_bytes() == b"a user's photo"
    assert json.loads((folder / "config.json").read_text())["kinema"]["sample"]["steps"] == 7

    result = invoke(["export", files.model, folder, "sample.steps=9"])  # a Kinema model now: updated in place
    assert result.exit_code == 0, result.stderr
    assert (folder / "photo.jpg").read_bytes() == b"a user's photo"
    assert json.loads((folder / "config.json").read_text())["kinema"]["sample"]["steps"] == 9
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".export_target")]  # no temp left


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(files, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("kinema.atomic.os.fsync", full)
    out = files.root / "full_disk"
    assert_clean(invoke(["export", files.model, out]), "No space left on device")
    assert not out.exists() and not [p for p in files.root.iterdir() if p.name.startswith(".full_disk")]


def test_a_folder_without_write_permission_is_one_line_naming_it(files, monkeypatch):
    def denied(suffix=None, prefix=None, dir=None):  # what mkdtemp raises in a folder we may not write (non-root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(Path(dir) / f"{prefix}x"))

    monkeypatch.setattr("kinema.atomic.tempfile.mkdtemp", denied)
    assert_clean(invoke(["export", files.model, files.root / "locked" / "model"]), "Permission denied")
    assert_clean(invoke(["export", files.model, files.root / "locked" / "model"]), "locked")


TINY_TRAIN = ["configs/balls.yaml", *TINY_OVERRIDES, "train.steps=1", "train.checkpoint_every=1"]


@pytest.fixture
def fast_text(monkeypatch, text_encoder):
    """`kinema train` in this process reuses the session's text encoder instead of loading its own."""
    monkeypatch.setattr("kinema.training.trainer.TextEncoder", lambda *args, **kwargs: text_encoder)


@pytest.fixture
def trained_run(files, fast_text):
    """A run folder with one checkpoint (1 training step), copied fresh for each test."""
    import shutil

    run = files.root / "run"
    if not run.exists():
        result = invoke(["train", *TINY_TRAIN, f"train.output_dir={run}"])
        assert result.exit_code == 0, result.stderr
    copy = files.root / f"run_copy_{len(list(files.root.glob('run_copy_*')))}"
    shutil.copytree(run, copy)
    return copy


def resume(run, *overrides):
    return invoke(["train", *TINY_TRAIN, f"train.output_dir={run}", *overrides, "--resume"])


def test_corrupt_trainer_state_is_one_line(trained_run):
    (checkpoint,) = [p for p in (trained_run / "checkpoints").iterdir() if p.is_dir()]
    (checkpoint / "trainer_state.json").write_text("{\"step\": 1, \"optim")
    assert_clean(resume(trained_run), "trainer_state.json")


def test_missing_trainer_state_is_one_line(trained_run):
    (checkpoint,) = [p for p in (trained_run / "checkpoints").iterdir() if p.is_dir()]
    (checkpoint / "trainer_state.json").unlink()
    assert_clean(resume(trained_run), "trainer_state.json")


@pytest.mark.parametrize("latest", [b"\xff\xfe\x00garbage", b"step_999999\n", b"../../../etc\n"])
def test_corrupt_latest_pointer_resumes_or_is_one_line(trained_run, latest):
    (trained_run / "checkpoints" / "latest").write_bytes(latest)
    result = resume(trained_run)
    assert "Traceback" not in result.stderr and not isinstance(result.exception, (TypeError, AttributeError))
    if result.exit_code != 0:
        assert_clean(result, "latest")


def test_resume_with_another_model_is_one_line(trained_run):
    assert_clean(resume(trained_run, "model.channels=16"), "model.channels")


def test_resume_without_checkpoint_is_one_line(files, fast_text):
    assert_clean(resume(files.empty), "checkpoint")


def test_output_dir_under_a_file_is_one_line(files, fast_text):
    assert_clean(invoke(["train", *TINY_TRAIN, f"train.output_dir={files.file / 'run'}"]), "notes.txt")


def test_full_disk_while_training_is_one_line(files, fast_text, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("kinema.atomic.os.fsync", full)
    assert_clean(invoke(["train", *TINY_TRAIN, f"train.output_dir={files.root / 'full_run'}"]),
                 "No space left on device", after_work=True)


def test_init_from_a_missing_model_is_one_line(files, fast_text):
    assert_clean(invoke(["train", *TINY_TRAIN, f"train.init_from={files.root / 'nowhere'}",
                         f"train.output_dir={files.root / 'init_run'}"]), "nowhere")


def test_init_from_a_model_that_does_not_fit_is_one_line(files, fast_text):
    assert_clean(invoke(["train", *TINY_TRAIN, "model.channels=16", f"train.init_from={files.model}",
                         f"train.output_dir={files.root / 'init_run'}"]), "train.init_from")
