"""Kinema Studio: a local Gradio page over the pipelines (text to video, frames as conditions, motion control),
with a gallery on disk; every result lists its settings and the `kinema` command that makes it again."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check

import json
import shutil
import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from kinema.control.camera import MOVES
from kinema.control.curves import CURVES, SPEED_PROFILES
from kinema.control.plot import describe_paths
from kinema.control.trajectory import read_trajectory_data, trajectory_from_data
from kinema.data.physics_balls import BALL_COLORS
from kinema.diffusion import SAMPLERS
from kinema.errors import KinemaError
from kinema.studio import canvas
from kinema.studio.gallery import Entry, Gallery
from kinema.studio.jobs import KNOBS, Finished, Job, run
from kinema.studio.models import SHIPPED, ModelCard, Pipelines
from kinema.video import read_video, to_uint8

FRAME_TASKS = {  # the page's names of the frame tasks -> (kinema command, what it reads)
    "animate an image": ("animate", "image"), "continue a video": ("predict", "clip"),
    "interpolate a video": ("interpolate", "clip"), "inpaint a video (draw the hole)": ("inpaint", "mask"),
    "extend the canvas": ("inpaint", "pad"), "edit a video": ("edit", "clip"),
}
CAMERA_PRESETS = ("", "pan-left:1", "pan-right:1", "tilt-up:1", "zoom-in:1.03", "zoom-out:1.03", "roll-cw:3",
                  "pan-left:1.5,zoom-in:1.02")
TRAJECTORY_FILE, MASK_FILE = "trajectory.json", "mask.png"
GALLERY_SHOWN = 48  # entries the page lists (each listing is sent and hashed on every result)
KNOB_RANGES = {"speed": (0.0, 4.0, 1.5), "brightness": (0.5, 1.5, 1.0), "motion_amount": (0.0, 0.3, 0.05)}  # min,max,start


def _model(text: str | None) -> str | None:
    """The model directory a page field names (empty or 'shipped': the models Kinema ships)."""
    text = (text or "").strip()
    return None if text in ("", SHIPPED) else text


def _scale(card: ModelCard) -> int:
    """Upscaling that makes the written video at least 256 pixels on its longer side."""
    return max(1, -(-256 // max(card.height, card.width)))


def _first_frame(path: str | None, side: int) -> np.ndarray | None:
    """The first frame of an image or video file as uint8 [side, side, 3] (None without a readable file)."""
    if not path:
        return None
    try:
        clip, _ = read_video(path, num_frames=1)
    except (KinemaError, OSError):
        return None
    frame = to_uint8(clip[:, :1])[0]
    return np.asarray(Image.fromarray(frame).resize((side, side), Image.NEAREST))


def _mask_file(editor: dict | None, clip: Path, folder: Path) -> str:
    """Write the hole painted in the editor (any painted pixel) at the clip's size as a mask image (white = hole)."""
    layers = [layer for layer in (editor or {}).get("layers") or [] if layer is not None]
    painted = [np.asarray(layer)[..., -1] > 0 for layer in layers if np.asarray(layer).ndim == 3]
    if not painted or not any(p.any() for p in painted):
        raise KinemaError("paint the hole to fill on the first frame (white brush) before inpainting")
    hole = np.logical_or.reduce(painted)
    _, height, width = read_video(clip, num_frames=1)[0].shape[1:]
    mask = Image.fromarray((hole * 255).astype(np.uint8)).resize((width, height), Image.BOX)
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).convert("RGB").save(folder / MASK_FILE)
    return MASK_FILE


def _copy_input(path: str | None, folder: Path, role: str) -> str:
    """Copy an uploaded file into the job's folder as `{role}{suffix}`; its name there."""
    if not path:
        raise KinemaError(f"upload {'an image' if role == 'image' else 'a video'} first")
    name = f"{role}{Path(path).suffix.lower()}"
    shutil.copyfile(path, folder / name)
    return name


def _sampling(seed, steps, sampler, guidance, negative_prompt) -> dict:
    """The sampler options of the page."""
    return dict(seed=int(seed), steps=int(steps), sampler=sampler, guidance=float(guidance),
                negative_prompt=negative_prompt)


def _edit_sampling(options: dict, card) -> dict:
    """An edit's sampler options: the page's guidance and sampler only where changed from the model's defaults, so
    that an edit otherwise takes the model's edit guidance (and DDIM from an inversion)."""
    return {name: value for name, value in options.items()
            if not (name in ("guidance", "sampler") and value == getattr(card, name))}


def build_app(model: str | None = None, gallery: str | Path = "kinema-gallery", device: str = "cpu") -> gr.Blocks:
    """The studio page for `model` (None: the shipped models), keeping results in `gallery`."""
    pipelines, shelf = Pipelines(device), Gallery(gallery)
    card = pipelines.card(model)

    def execute(job: Job, staging: Path):
        """Run a job in its staging folder and save its result there; while a long video streams, yield the frames
        finished so far after each one."""
        began, frames = time.perf_counter(), []
        for item in run(job, pipelines, staging):
            if isinstance(item, Finished):
                shelf.save(staging, job, item, time.perf_counter() - began)
            else:
                frames.append(to_uint8(item[:, None])[0])
                yield frames

    def submit(make_job):
        """Stage, run and keep a job; stream its frames; errors become a message in the page, the gallery intact."""
        staging, frames = None, []
        try:
            with shelf.new_entry() as (staging, name):
                job = make_job(staging)
                for frames in execute(job, staging):
                    yield gr.update(), gr.update(value=list(frames), visible=True), gr.update(), gr.update(), \
                        gr.update(), gr.update()
            entry = shelf.entry(name)
        except (KinemaError, OSError) as error:
            message = str(error) if isinstance(error, KinemaError) else \
                f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
            raise gr.Error(" ".join(message.replace(f"{staging}/", "").split()))
        yield (str(entry.video), gr.update(visible=bool(frames)), str(entry.sheet), [str(p) for p in entry.downloads],
               entry.describe(), _gallery(shelf))

    # every hour Gradio drops its served copies of results older than a day (the gallery keeps the originals)
    with gr.Blocks(title="Kinema Studio", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        model_state = gr.State(model)
        trajectory = gr.State(canvas.empty_trajectory(card.width, card.num_frames))
        background = gr.State(None)  # the canvas's first frame (None: a dark one)
        gr.Markdown("# Kinema Studio\nGenerate and control video with Kinema's models, on this machine.")
        with gr.Row():
            model_box = gr.Textbox(model or SHIPPED, label="model (a model or checkpoint directory; 'shipped' for "
                                   "Kinema's)", elem_id="model", scale=3)
            load = gr.Button("Load model", elem_id="load-model", scale=1)
        card_md = gr.Markdown(card.markdown(), elem_id="model-card")
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="prompt", placeholder="a red ball and a blue ball bounce", elem_id="prompt",
                                    visible=card.text)
                negative = gr.Textbox(label="negative prompt", elem_id="negative-prompt", visible=card.text)
                with gr.Row():
                    frames = gr.Number(card.num_frames, label="frames (more than the model's: window by window)",
                                       precision=0, minimum=1, elem_id="frames")
                    seed = gr.Number(0, label="seed", precision=0, elem_id="seed")
                    sampler = gr.Dropdown(list(SAMPLERS), value=card.sampler, label="sampler", elem_id="sampler")
                    steps = gr.Number(card.steps, label="steps", precision=0, minimum=1, elem_id="steps")
                    guidance = gr.Number(card.guidance, label="guidance (1: off)", minimum=0, elem_id="guidance")
                label = gr.Dropdown(["", *card.classes], value="", label="class", visible=bool(card.classes))
                with gr.Tabs():
                    with gr.Tab("Text to video", id="text"):
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Tab("Frames as conditions", id="frames"):
                        task = gr.Radio(list(FRAME_TASKS), value="animate an image", label="task", elem_id="task")
                        image = gr.Image(type="filepath", label="image to animate", elem_id="image")
                        last = gr.Checkbox(False, label="the image is the last frame")
                        clip = gr.File(label="video", file_types=["video", ".gif", ".avi", ".mkv"], elem_id="clip",
                                       visible=False)
                        hole = gr.ImageEditor(type="numpy", label="paint the hole on the first frame",
                                              brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                                              elem_id="hole", visible=False)
                        with gr.Row():
                            factor = gr.Number(2, label="interpolation factor", precision=0, minimum=2,
                                               visible=False)
                            new_frames = gr.Number(0, label="new frames (0: the model's frames less the context)",
                                                   precision=0, minimum=0, visible=False)
                            pad = gr.Textbox("8,0,8,0", label="grow the canvas: left,top,right,bottom pixels",
                                             visible=False)
                            strength = gr.Slider(0, 1, 0.6, label="edit strength (0 keeps the video)",
                                                 visible=False)
                            source = gr.Textbox(label="what the video shows (edit from its inversion)",
                                                visible=False)
                        run_task = gr.Button("Run the task", variant="primary", elem_id="run-task")
                    with gr.Tab("Motion control", id="motion"):
                        with gr.Row():
                            with gr.Column():
                                drawing = gr.Image(canvas.draw(trajectory.value), label="click to add points to "
                                                   "the path of the chosen ball", interactive=False,
                                                   elem_id="canvas", height=canvas.CANVAS_SIDE,
                                                   width=canvas.CANVAS_SIDE)
                                path_status = gr.Markdown("", elem_id="path-status")
                            with gr.Column():
                                colour = gr.Dropdown(list(BALL_COLORS), value="red", label="ball", elem_id="colour")
                                curve = gr.Dropdown(list(CURVES), value="min_acceleration", label="curve",
                                                    elem_id="curve")
                                speed_profile = gr.Dropdown(list(SPEED_PROFILES), value="keypoints",
                                                            label="speed along the path", elem_id="speed-profile")
                                radius = gr.Slider(1, 8, 3.5, step=0.5, label="radius (frame pixels)")
                                with gr.Row():
                                    undo = gr.Button("Undo point", elem_id="undo")
                                    clear = gr.Button("Clear paths", elem_id="clear")
                                on_result = gr.Button("Draw on the result's first frame", elem_id="on-result")
                                trajectory_upload = gr.UploadButton("Load a trajectory file", file_types=[
                                    ".json", ".yaml", ".yml"], elem_id="trajectory-upload")
                                trajectory_download = gr.DownloadButton("Download the trajectory file",
                                                                        elem_id="trajectory-download")
                                trajectory_guidance = gr.Number(1.0, label="trajectory guidance (0: the map "
                                                                "alone, for a model trained with it)", minimum=0)
                                land_on_path = gr.Checkbox(False, label="move the balls onto their paths when done "
                                                           "(trajectory projection)", elem_id="trajectory-projection")
                        with gr.Row():
                            camera = gr.Textbox("", label="camera move per frame step, e.g. pan-left:2,zoom-in:1.02 "
                                                f"({', '.join(MOVES)})", elem_id="camera")
                            preset = gr.Dropdown(list(CAMERA_PRESETS), value="", label="camera presets")
                        with gr.Row():
                            knobs_on = gr.CheckboxGroup(list(card.attributes), label="knobs to set",
                                                        visible=bool(card.attributes), elem_id="knobs-on")
                            knobs = {name: gr.Slider(*KNOB_RANGES[name], label=f"{name.replace('_', ' ')} knob",
                                                     visible=name in card.attributes, elem_id=f"knob-{name}")
                                     for name in KNOBS}
                        trajectory_json = gr.Code(json.dumps(trajectory.value), language="json",
                                                  label="trajectory", elem_id="trajectory-json", interactive=False)
                        generate_motion = gr.Button("Generate with motion control", variant="primary",
                                                    elem_id="generate-motion")
            with gr.Column(scale=2):
                video = gr.Video(label="result", autoplay=True, loop=True, elem_id="result", interactive=False)
                streamed = gr.Gallery(label="frames as they are finished", visible=False, columns=8,
                                      elem_id="streamed")
                sheet = gr.Image(label="contact sheet (a column per frame)", interactive=False, elem_id="sheet")
                downloads = gr.File(label="download (mp4, gif, webm, contact sheet)", file_count="multiple",
                                    interactive=False, elem_id="downloads")
                settings = gr.Markdown("", elem_id="settings")
        gr.Markdown("## Gallery")
        gallery_view = gr.Gallery(label=f"the gallery in {shelf.folder.resolve()}", columns=6, height=260,
                                  object_fit="contain", elem_id="gallery", allow_preview=False)
        outputs = [video, streamed, sheet, downloads, settings, gallery_view]

        # -- model choice: show what it was trained for, hide what it cannot use
        def choose_model(text):
            chosen = _model(text)
            try:
                found = pipelines.card(chosen)
            except (KinemaError, OSError) as error:
                raise gr.Error(f"cannot load {text!r}: {' '.join(str(error).split())}")
            return (chosen, found.markdown(), gr.update(visible=found.text), gr.update(visible=found.text),
                    gr.update(value=found.num_frames), gr.update(choices=["", *found.classes], value="",
                                                                 visible=bool(found.classes)),
                    canvas.empty_trajectory(found.width, found.num_frames), found.sampler, found.steps,
                    found.guidance, gr.update(choices=list(found.attributes), value=[],
                                              visible=bool(found.attributes)),
                    *[gr.update(visible=name in found.attributes) for name in KNOBS])

        load.click(choose_model, model_box, [model_state, card_md, prompt, negative, frames, label, trajectory,
                                             sampler, steps, guidance, knobs_on, *knobs.values()])

        # -- text to video (longer than the model's frames: streamed frame by frame)
        def text_to_video(model_dir, text, negative_text, count, seed_value, steps_value, sampler_value,
                          guidance_value, label_value, progress=gr.Progress(track_tqdm=True)):
            found = pipelines.card(model_dir)

            def make(staging):
                _check_prompt(found, text)
                return Job("generate", text or "", model_dir, options=dict(
                    num_frames=int(count) if count and int(count) != found.num_frames else None,
                    label=label_value or None,
                    **_sampling(seed_value, steps_value, sampler_value, guidance_value, negative_text)),
                    scale=_scale(found))

            yield from submit(make)

        sampler_inputs = [seed, steps, sampler, guidance]
        generate.click(text_to_video, [model_state, prompt, negative, frames, *sampler_inputs, label], outputs)

        # -- frames as conditions
        def show_task(name):
            reads = FRAME_TASKS[name][1]
            return (gr.update(visible=reads == "image"), gr.update(visible=reads == "image"),
                    gr.update(visible=reads != "image"), gr.update(visible=reads == "mask"),
                    gr.update(visible=name == "interpolate a video"), gr.update(visible=name == "continue a video"),
                    gr.update(visible=reads == "pad"), gr.update(visible=name == "edit a video"),
                    gr.update(visible=name == "edit a video"))

        task.change(show_task, task, [image, last, clip, hole, factor, new_frames, pad, strength, source])
        clip.change(lambda path: _first_frame(path, canvas.CANVAS_SIDE), clip, hole)

        def frame_task(model_dir, name, text, negative_text, seed_value, steps_value, sampler_value, guidance_value,
                       image_path, last_value, clip_file, editor, factor_value, frames_value, pad_text,
                       strength_value, source_text, progress=gr.Progress(track_tqdm=True)):
            command, reads = FRAME_TASKS[name]
            found = pipelines.card(model_dir)

            def make(staging):
                inputs, options = {}, _sampling(seed_value, steps_value, sampler_value, guidance_value,
                                                 negative_text)
                if command == "animate":
                    inputs["image"] = _copy_input(image_path, staging, "image")
                    options["last"] = bool(last_value)
                else:
                    inputs["clip"] = _copy_input(clip_file, staging, "clip")
                if reads == "mask":
                    inputs["mask"] = _mask_file(editor, staging / inputs["clip"], staging)
                if reads == "pad":
                    options["pad"] = _pad(pad_text)
                options.update({"interpolate": dict(factor=int(factor_value or 2)),
                                "predict": dict(frames=int(frames_value) or None),
                                "edit": dict(strength=strength_value, source=source_text or None)}.get(command, {}))
                if command == "edit":
                    options = _edit_sampling(options, found)
                return Job(command, text or "", model_dir, inputs, options, _scale(found))

            yield from submit(make)

        run_task.click(frame_task, [model_state, task, prompt, negative, *sampler_inputs, image, last, clip, hole,
                                    factor, new_frames, pad, strength, source], outputs)

        # -- motion control: paths drawn by clicking, camera moves, knobs
        def redraw(data, first_frame):
            try:
                status = "; ".join(describe_paths(canvas.checked(data)))
            except KinemaError as error:
                status = str(error)
            path = shelf.folder / ".drafts" / TRAJECTORY_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(canvas.complete_objects(data), indent=2) + "\n")
            return data, canvas.draw(data, first_frame), status, json.dumps(data), gr.update(value=str(path))

        drawn = [trajectory, drawing, path_status, trajectory_json, trajectory_download]

        def click(data, first_frame, colour_value, curve_value, speed_value, radius_value, event: gr.SelectData):
            x, y = canvas.canvas_point(*event.index, data["size"])
            return redraw(canvas.add_point(data, colour_value, x, y, curve=curve_value, speed=speed_value,
                                           radius=radius_value), first_frame)

        drawing.select(click, [trajectory, background, colour, curve, speed_profile, radius], drawn,
                       trigger_mode="multiple", show_progress="hidden")  # no overlay to swallow the next click
        undo.click(lambda data, first, colour_value: redraw(canvas.remove_last_point(data, colour_value), first),
                   [trajectory, background, colour], drawn)
        clear.click(lambda data, first: redraw(canvas.empty_trajectory(data["size"], data["num_frames"]), first),
                    [trajectory, background], drawn)

        def draw_on_result(video_path, data):
            first = _first_frame(video_path, canvas.CANVAS_SIDE)
            if first is None:
                raise gr.Error("make or pick a result first: its first frame becomes the canvas")
            return (first, *redraw(data, first))

        on_result.click(draw_on_result, [video, trajectory], [background, *drawn])

        def load_trajectory(file, first_frame):
            try:
                data = read_trajectory_data(file)
                curves = trajectory_from_data(data, file)
            except KinemaError as error:
                raise gr.Error(" ".join(str(error).replace(str(Path(file).parent) + "/", "").split()))
            for obj, parsed in zip(data["objects"], curves.objects):  # the canvas draws each in its colour
                obj["colour"] = parsed.colour
            return redraw(data, first_frame)

        trajectory_upload.upload(load_trajectory, [trajectory_upload, background], drawn)
        preset.change(lambda value: value, preset, camera)

        def motion(model_dir, text, negative_text, seed_value, steps_value, sampler_value, guidance_value, data,
                   camera_text, guidance_to_path, land, knobs_set, *knob_values,
                   progress=gr.Progress(track_tqdm=True)):
            found = pipelines.card(model_dir)

            def make(staging):
                _check_prompt(found, text)
                inputs, options = {}, _sampling(seed_value, steps_value, sampler_value, guidance_value,
                                                 negative_text)
                if canvas.complete_objects(data)["objects"]:
                    canvas.checked(data)
                    (staging / TRAJECTORY_FILE).write_text(json.dumps(canvas.complete_objects(data), indent=2))
                    inputs["trajectory"] = TRAJECTORY_FILE
                    options["trajectory_guidance"] = guidance_to_path
                    options["trajectory_projection"] = 1.0 if land else None
                steering = {name: value for name, value in zip(KNOBS, knob_values) if name in knobs_set}
                if camera_text.strip():
                    steering["camera"] = camera_text.strip()
                if not inputs and not steering:
                    raise KinemaError("draw a path, pick a camera move or set a knob first")
                options.update(steering)
                return Job("generate", text or "", model_dir, inputs, options, _scale(found))

            yield from submit(make)

        generate_motion.click(motion, [model_state, prompt, negative, *sampler_inputs, trajectory, camera,
                                       trajectory_guidance, land_on_path, knobs_on, *knobs.values()], outputs)

        # -- the gallery: listed on every page load; a click shows the entry
        app.load(lambda: _gallery(shelf), None, gallery_view)

        def show_entry(event: gr.SelectData):
            caption = (event.value or {}).get("caption") or ""
            entry: Entry | None = shelf.entry(caption.split(":")[0])
            if entry is None:
                raise gr.Error("that gallery entry is gone")
            return str(entry.video), str(entry.sheet), [str(p) for p in entry.downloads], entry.describe()

        gallery_view.select(show_entry, None, [video, sheet, downloads, settings])
    return app


def _gallery(shelf: Gallery):
    """The gallery view: (contact sheet, caption) of the newest GALLERY_SHOWN entries under a label that counts
    them all."""
    entries = shelf.entries()
    shown = f"the newest {GALLERY_SHOWN} of " if len(entries) > GALLERY_SHOWN else ""
    return gr.update(value=[(str(entry.sheet), entry.caption) for entry in entries[:GALLERY_SHOWN]],
                     label=f"{shown}{len(entries)} results kept in {shelf.folder.resolve()}")


def _check_prompt(card: ModelCard, text: str | None) -> None:
    """A model that reads text needs a prompt to make a video from."""
    if card.text and not (text or "").strip():
        raise KinemaError("the prompt is empty: say what the video shows")


def _pad(text: str) -> list[int]:
    """left,top,right,bottom pixels of the canvas to add."""
    parts = [part.strip() for part in (text or "").split(",")]
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        raise KinemaError(f"grow the canvas by four whole numbers left,top,right,bottom, got '{text}'")
    return [int(part) for part in parts]


def launch(model: str | None, gallery: str | Path, host: str, port: int, device: str) -> None:
    """Serve the studio until interrupted, printing its address."""
    app = build_app(model, gallery, device)
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                           ssr_mode=False, allowed_paths=[str(Path(gallery).resolve())], show_error=True)
    print(f"Kinema Studio at {url} (gallery: {Path(gallery).resolve()}); Ctrl+C stops it", flush=True)
    app.block_thread()
