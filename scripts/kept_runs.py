"""Carry a long CPU run's finished work from one machine to the next, in git.

A session's machine is new each day: `runs/` (ignored by git) is gone, and with it hours of
extraction, filtering and evaluation. This copies the text a run produced (stage outputs and eval
traces: run directories of config.json, shards and manifest.json, and the figure files of the
script's own steps) into a committed folder, and back into `runs/` before the run resumes. Model
weights are never kept: train-stage outputs are left out, and the pipeline's state is cut before
``train`` so that the pipeline trains again (resuming its checkpoints would need the weights).

    python scripts/kept_runs.py keep    runs/cpu-gsm8k docs/results/cpu-gsm8k/kept
    python scripts/kept_runs.py restore runs/cpu-gsm8k docs/results/cpu-gsm8k/kept

``keep`` replaces the kept copy with what the run holds now (partial eval runs included: their shards
are whole files, so the copy resumes like the original). ``restore`` copies back only what the run
folder lacks: a file the run already has is never overwritten.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from rationalyst.pipeline import STAGES, STATE_FILE

#: Directories holding model weights (the train stage and its variants) and what is rebuilt anyway.
LEFT_OUT = ("train", "report")
#: Pipeline stages whose outputs are kept (those before training); the pipeline's state keeps only these.
KEPT_STAGES = STAGES[: STAGES.index("train")]


def _left_out(relative: Path) -> bool:
    top = relative.parts[0]
    return (
        any(top == name or top.startswith(f"{name}-") for name in LEFT_OUT)
        or any(part.startswith(".") for part in relative.parts)  # temp files of shards being written
        or relative.suffix in {".safetensors", ".bin", ".gguf", ".pt"}
        or relative.name == STATE_FILE
    )


def keep(run: Path, kept: Path) -> int:
    """Replace ``kept`` with ``run``'s text files; returns how many were copied."""
    if not run.is_dir():
        raise SystemExit(f"kept_runs: no run folder {run}")
    staging = kept.with_name(kept.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    copied = 0
    for path in sorted(run.rglob("*")):
        relative = path.relative_to(run)
        if path.is_file() and not _left_out(relative):
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / relative)
            copied += 1
    state = run / STATE_FILE
    if state.is_file():
        stages = json.loads(state.read_text()).get("stages", {})
        trimmed = {name: entry for name, entry in stages.items() if name in KEPT_STAGES}
        staging.mkdir(parents=True, exist_ok=True)
        (staging / STATE_FILE).write_text(json.dumps({"stages": trimmed}, indent=1) + "\n")
    shutil.rmtree(kept, ignore_errors=True)
    if staging.exists():
        staging.rename(kept)
    return copied


def restore(run: Path, kept: Path) -> int:
    """Copy into ``run`` every kept file it lacks; returns how many were copied."""
    if not kept.is_dir():
        return 0
    copied = 0
    for path in sorted(kept.rglob("*")):
        target = run / path.relative_to(kept)
        if path.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied += 1
    return copied


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in {"keep", "restore"}:
        raise SystemExit("usage: kept_runs.py keep|restore RUN_FOLDER KEPT_FOLDER")
    action, run, kept = argv[0], Path(argv[1]), Path(argv[2])
    count = keep(run, kept) if action == "keep" else restore(run, kept)
    print(f"kept_runs {action}: {count} files ({run} {'->' if action == 'keep' else '<-'} {kept})")


if __name__ == "__main__":
    main(sys.argv[1:])
