"""kill -9 at random moments: `kinema train` subprocesses killed and resumed end equal to an unbroken run (the short
form of benchmarks/kill_resume.py)."""

import importlib.util
import random
from pathlib import Path

from kinema.conditioning.text import TextEncoder
from kinema.config import load_config
from kinema.training.trainer import Trainer
from test_training_resume import one_thread  # noqa: F401  (autouse fixture: the subprocesses run one thread too)

_spec = importlib.util.spec_from_file_location(
    "kill_resume", Path(__file__).resolve().parents[1] / "benchmarks" / "kill_resume.py")
kill_resume = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_resume)


def test_sigkill_at_random_moments_then_resume_equals_an_unbroken_run(tmp_path):
    # An encoder of its own: the session's may hold embeddings computed with another thread count than the
    # subprocesses use, and a thread count changes float reductions.
    text_encoder = TextEncoder()
    steps, seed = 6, random.randrange(10**6)  # long enough that no round finishes before its kill
    unbroken = load_config(kill_resume.CONFIG, kill_resume.overrides(tmp_path / "straight", steps))
    Trainer(unbroken, text_encoder=text_encoder, progress=False).train()
    rounds = kill_resume.kill_loop(tmp_path / "killed", steps, kills=2, max_delay=0.4, seed=seed, threads=1)
    assert any(r["killed"] for r in rounds), rounds
    killed = load_config(kill_resume.CONFIG, kill_resume.overrides(tmp_path / "killed", steps))
    Trainer(killed, resume=True, text_encoder=text_encoder, progress=False).train()  # resumed here: one start less
    result = kill_resume.compare(tmp_path / "straight", tmp_path / "killed")
    assert result["final_step"] == steps and result["loads_and_finite"], (seed, rounds, result)
    assert result["tensors_differing"] == 0, (seed, rounds, result)
    assert result["leftovers"] == [], (seed, rounds, result)
