"""scripts/kept_runs.py: a long run's text survives a new machine, its weights never enter git."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kept_runs.py"


def load_script():
    spec = importlib.util.spec_from_file_location("kept_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_run(run: Path) -> None:
    write(run / "select/shards/part-00000.jsonl", '{"id": "a"}\n')
    write(run / "select/manifest.json", "{}")
    write(run / "eval-cot/gsm8k/cot/shards/part-00000.jsonl", '{"id": "p1"}\n')
    write(run / "eval-cot/gsm8k/cot/shards/.part-00001.jsonl.tmp", "half a shard")
    write(run / "train/merged/model.safetensors", "weights")
    write(run / "train-tau1.2/summary.json", "{}")
    write(run / "dev-base.txt", "gain +0.05\n")
    write(run / "pipeline.json", json.dumps({"stages": {s: {"fingerprint": s, "complete": True} for s in ("select", "extract", "filter", "train", "eval")}}))


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_keep_copies_the_text_and_leaves_weights_and_temp_files_out(tmp_path):
    kept_runs = load_script()
    run, kept = tmp_path / "run", tmp_path / "kept"
    make_run(run)
    write(kept / "stale.txt", "from an older keep")
    kept_runs.keep(run, kept)
    assert set(files(kept)) == {
        "select/shards/part-00000.jsonl", "select/manifest.json", "eval-cot/gsm8k/cot/shards/part-00000.jsonl",
        "dev-base.txt", "pipeline.json",
    }
    # The pipeline must train again (no weights came along): its state stops before train.
    assert set(json.loads((kept / "pipeline.json").read_text())["stages"]) == {"select", "extract", "filter"}


def test_restore_fills_in_what_a_new_machine_lacks_and_overwrites_nothing(tmp_path):
    kept_runs = load_script()
    run, kept, fresh = tmp_path / "run", tmp_path / "kept", tmp_path / "fresh"
    make_run(run)
    kept_runs.keep(run, kept)
    write(fresh / "dev-base.txt", "measured again\n")
    assert kept_runs.restore(fresh, kept) == 4
    restored = files(fresh)
    assert restored["dev-base.txt"] == "measured again\n"
    assert restored["eval-cot/gsm8k/cot/shards/part-00000.jsonl"] == '{"id": "p1"}\n'
    assert restored["select/manifest.json"] == "{}" and "train/merged/model.safetensors" not in restored
