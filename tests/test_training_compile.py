"""`train.compile=true` trains a torch.compile'd denoiser: same checkpoint names, same weights within tolerance.

On CPU the graph is captured by dynamo and AOT autograd but run without inductor's C++ code generation (over 40 s
for one step on 2 cores); tests/gpu runs the default backend."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from kinema.training.trainer import Trainer


def test_compiled_training_step_matches_eager_and_saves_the_same_names(tiny_config, tmp_path, text_encoder,
                                                                       monkeypatch):
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **options: compile_module(self, backend="aot_eager"))
    eager = Trainer(tiny_config("train.steps=1", f"train.output_dir={tmp_path / 'eager'}"),
                    text_encoder=text_encoder, progress=False).train()
    trainer = Trainer(tiny_config("train.steps=1", "train.compile=true", f"train.output_dir={tmp_path / 'compiled'}"),
                      text_encoder=text_encoder, progress=False)
    assert trainer.accelerator.unwrap_model(trainer.model)._compiled_call_impl is not None
    compiled = trainer.train()
    a, b = load_file(str(eager / "model.safetensors")), load_file(str(compiled / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
