"""Tests for CLIP-SIM with a tiny CLIP model and tokenizer built offline in the test."""

import json

import pytest
import torch
import transformers
from tokenizers.pre_tokenizers import ByteLevel

from kinema.errors import KinemaError
from kinema.metrics.text_alignment import clip_sim


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random CLIP (32 px images, one layer per tower) with a byte-level vocabulary and no merges."""
    root = tmp_path_factory.mktemp("clip")
    symbols = sorted(ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"])}
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"], **tower),
        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=16)
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(root / "model")
    images = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    transformers.CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(root / "model")
    return root / "model"


def test_clip_sim_is_the_frame_mean_of_clip_cosine_similarity(tiny_clip):
    generator = torch.Generator().manual_seed(0)
    videos = torch.rand(2, 3, 3, 40, 48, generator=generator) * 2 - 1
    captions = ["a red ball falls", "two blue balls bounce"]
    scores = clip_sim(videos, captions, tiny_clip, batch_size=4)
    model = transformers.CLIPModel.from_pretrained(tiny_clip).eval()
    processor = transformers.CLIPProcessor.from_pretrained(tiny_clip)
    for b in range(2):
        frames = [((f.permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy() for f in videos[b].unbind(1)]
        inputs = processor(text=[captions[b]], images=frames, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model(**inputs)
        assert scores[b].item() == pytest.approx((out.image_embeds @ out.text_embeds[0]).mean().item(), abs=1e-5)


def test_clip_sim_reports_a_bad_model_directory_on_one_line(tmp_path):
    with pytest.raises(KinemaError, match="not found"):
        clip_sim(torch.zeros(1, 3, 2, 8, 8), ["x"], tmp_path / "missing")
    with pytest.raises(KinemaError, match="one caption per video"):
        clip_sim(torch.zeros(2, 3, 2, 8, 8), ["x"], tmp_path)
    with pytest.raises(KinemaError, match="cannot load a CLIP model"):
        clip_sim(torch.zeros(1, 3, 2, 8, 8), ["x"], tmp_path)
