"""Run in each process of a distributed test: record the captions (clip ids) the trainer's loader hands this
process in its first `steps` optimizer steps, streamed and indexed, in OUT/{stream,indexed}-rank{N}.json."""

import json
import sys
from pathlib import Path

from kinema.config import load_config
from kinema.training.trainer import Trainer

if __name__ == "__main__":
    out, steps, overrides = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    for name, stream in (("stream", "true"), ("indexed", "false")):
        trainer = Trainer(load_config(None, [*overrides, f"data.stream={stream}"]), progress=False)
        batches = trainer._step_batches()
        seen = [caption for _ in range(steps) for batch in next(batches) for caption in batch["caption"]]
        (out / f"{name}-rank{trainer.accelerator.process_index}.json").write_text(json.dumps(seen))
