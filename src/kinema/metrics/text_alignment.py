"""Text-video alignment: CLIP-SIM = 1/T sum_t cos(CLIP_img(x_t), CLIP_text(c)) per clip (chapter 11.1.4).

Needs a CLIP model on disk (a transformers CLIPModel directory); nothing is downloaded. Frames go
through the model's own CLIPProcessor (resize, centre crop, normalisation) as uint8 RGB. The
projected embeddings are read from `get_text_features` / `get_image_features`, which return a
tensor in transformers 4 and an output object holding it as `pooler_output` in transformers 5.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from kinema.errors import KinemaError


def _unit_embedding(output) -> Tensor:
    """The unit-length projected CLIP embedding [N, D] of a get_*_features result (tensor, or v5 output object)."""
    return torch.nn.functional.normalize(output if isinstance(output, Tensor) else output.pooler_output, dim=-1)


@torch.no_grad()
def clip_sim(videos: Tensor, captions: list[str], model_path: str | Path, batch_size: int = 64) -> Tensor:
    """Mean cosine similarity of each clip's frames [B, 3, T, H, W] in [-1, 1] to its caption: [B]."""
    import transformers

    if len(captions) != len(videos):
        raise KinemaError(f"CLIP-SIM needs one caption per video, got {len(captions)} for {len(videos)}")
    path = Path(model_path)
    if not path.is_dir():
        raise KinemaError(f"CLIP model directory not found: {path}")
    try:
        model = transformers.CLIPModel.from_pretrained(str(path), local_files_only=True).eval()
        processor = transformers.CLIPProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as error:
        raise KinemaError(f"cannot load a CLIP model from {path}: {str(error).splitlines()[0]}") from None
    text = processor(text=list(captions), return_tensors="pt", padding=True, truncation=True)
    text_embeds = _unit_embedding(model.get_text_features(**text))  # [B, D]
    frames = ((rearrange(videos.clamp(-1, 1), "b c t h w -> (b t) h w c") + 1) * 127.5).round().to(torch.uint8)
    image_embeds = []
    for chunk in frames.split(batch_size):
        pixels = processor(images=list(chunk.numpy()), return_tensors="pt")["pixel_values"]
        image_embeds.append(_unit_embedding(model.get_image_features(pixel_values=pixels)))
    image_embeds = rearrange(torch.cat(image_embeds), "(b t) d -> b t d", b=len(videos))
    return torch.einsum("btd,bd->bt", image_embeds, text_embeds).mean(dim=1).double()
