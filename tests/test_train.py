"""Stage 4 (train the rationalist): data, loss mask, left truncation, split, LoRA training, resume, recipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
import yaml

from rationalyst.config import load_config
from rationalyst.errors import InputError, RationalystError
from rationalyst.data.rationale_text import load_instruction
from rationalyst.lm.registry import base_model_folder
from rationalyst.stages.train import TrainConfig, read_kept_records, split_by_document, subsample_documents
from rationalyst.stages.training_data import IGNORE_INDEX, ChatEncoder, PadCollator

RECIPES = Path(str(resources.files("rationalyst").joinpath("recipes")))

TOPICS = [
    ("The bridge was closed for repairs.", "A closed bridge sends traffic to other routes."),
    ("Anna forgot her umbrella this morning.", "It rained later, so she had no cover."),
    ("The shop cut its prices by half.", "Lower prices bring in more buyers."),
    ("Tom studied every night for a month.", "Steady practice makes tests easier."),
    ("The river rose after three days of storms.", "Heavy rain fills rivers quickly."),
]


def fixture_records(n_docs: int = 10, per_doc: int = 5) -> list[dict]:
    """~50 records over several documents; every fifth record is not kept."""
    records = []
    for d in range(n_docs):
        for p in range(per_doc):
            preceding, rationale = TOPICS[(d + p) % len(TOPICS)]
            kept = p != 4
            records.append(
                {
                    "id": f"doc{d}:{p}",
                    "doc_id": f"doc{d}",
                    "source": "web",
                    "position": p,
                    "preceding": f"Story {d}. {preceding}",
                    "rationale": rationale if kept else "DROPPED RATIONALE SHOULD NEVER BE TRAINED",
                    "following": "Then things changed.",
                    "score_without": -10.0,
                    "score_with": -9.0 if kept else -11.0,
                    "delta": 1.0 if kept else -1.0,
                    "tau": 0.0,
                    "kept": kept,
                }
            )
    return records


def write_run_dir(path: Path, records: list[dict]) -> Path:
    """A filter-stage-like run directory holding the records in one shard."""
    shards = path / "shards"
    shards.mkdir(parents=True)
    (shards / "part-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_folder(TrainConfig(input="x", output="y").base))


# ----------------------------------------------------------------------------- data


def test_read_kept_records_from_run_dir_and_jsonl(tmp_path):
    records = fixture_records()
    run_dir = write_run_dir(tmp_path / "filter", records)
    kept, counts = read_kept_records(run_dir)
    assert len(kept) == 40 and counts["not_kept"] == 10
    assert all(r["kept"] is True for r in kept)
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    kept2, _ = read_kept_records(jsonl)
    assert [r["id"] for r in kept2] == [r["id"] for r in kept]


def test_min_delta_tightens_the_filter_s_decisions(tmp_path):
    records = fixture_records()
    for i, r in enumerate(records):
        if r["kept"]:
            r["delta"] = [0.0, 0.5, 1.2, 2.0][i % 4]  # 1.2 itself is kept: delta >= tau
    expected = [r["id"] for r in records if r["kept"] and r["delta"] >= 1.2]
    kept, counts = read_kept_records(write_run_dir(tmp_path / "filter", records), min_delta=1.2)
    assert [r["id"] for r in kept] == expected and 0 < len(expected) < 40
    assert counts["below_min_delta"] == 40 - len(expected) and counts["not_kept"] == 10
    with pytest.raises(InputError, match="delta >= 5"):
        read_kept_records(tmp_path / "filter", min_delta=5.0)


def test_split_by_document_is_disjoint_and_seeded():
    records = [r for r in fixture_records(n_docs=20) if r["kept"]]
    train, dev = split_by_document(records, 0.25, seed=3)
    train_docs, dev_docs = {r["doc_id"] for r in train}, {r["doc_id"] for r in dev}
    assert train_docs and dev_docs and not (train_docs & dev_docs)
    assert len(dev_docs) == 5 and len(train) + len(dev) == len(records)
    again, _ = split_by_document(records, 0.25, seed=3)
    assert [r["id"] for r in again] == [r["id"] for r in train]
    other, _ = split_by_document(records, 0.25, seed=4)
    assert {r["doc_id"] for r in other} != train_docs


def test_a_fraction_of_the_documents_is_seeded_and_keeps_each_document_whole():
    records = [r for r in fixture_records(n_docs=20) if r["kept"]]
    half = subsample_documents(records, 0.5, seed=3)
    chosen = {r["doc_id"] for r in half}
    assert len(chosen) == 10
    assert half == [r for r in records if r["doc_id"] in chosen]  # all of a chosen document, in order
    assert subsample_documents(records, 0.5, seed=3) == half
    assert {r["doc_id"] for r in subsample_documents(records, 0.5, seed=4)} != chosen
    assert subsample_documents(records, 1.0, seed=3) == records
    assert len({r["doc_id"] for r in subsample_documents(records, 0.01, seed=3)}) == 1


def _unmasked(example) -> list[int]:
    return [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]


def test_loss_mask_covers_exactly_rationale_and_end_of_turn(tokenizer):
    encoder = ChatEncoder(tokenizer, load_instruction(), max_length=512)
    assert encoder.end_of_turn == "<|im_end|>"  # SmolLM2's ChatML end of an assistant turn
    ex = encoder.encode("The bridge was closed for repairs.", "  A closed bridge sends traffic elsewhere. ")
    labelled = [i for i, label in enumerate(ex.labels) if label != IGNORE_INDEX]
    # One contiguous block at the very end, equal to the input ids there.
    assert labelled == list(range(labelled[0], len(ex.input_ids)))
    assert all(ex.labels[i] == ex.input_ids[i] for i in labelled)
    assert tokenizer.decode(_unmasked(ex)) == "A closed bridge sends traffic elsewhere.<|im_end|>"
    # Everything before is exactly the chat-templated prompt with the generation header.
    prompt = tokenizer.decode(ex.input_ids[: labelled[0]])
    assert prompt == tokenizer.apply_chat_template(
        [{"role": "user", "content": load_instruction() + "\n\n" + "The bridge was closed for repairs."}],
        add_generation_prompt=True, tokenize=False,
    )
    assert prompt.endswith("<|im_start|>assistant\n") and ex.truncated_chars == 0


def test_long_context_is_cut_on_the_left_and_rationale_survives(tokenizer):
    encoder = ChatEncoder(tokenizer, load_instruction(), max_length=96)
    words = " ".join(f"word{i}" for i in range(400))
    preceding = "BEGINNING MARKER " + words + " ENDING MARKER."
    rationale = "The ending follows from everything said before it."
    ex = encoder.encode(preceding, rationale)
    assert ex is not None and len(ex.input_ids) <= 96
    assert tokenizer.decode(_unmasked(ex)) == rationale + "<|im_end|>"
    assert ex.truncated_chars > 0
    assert preceding.endswith(ex.preceding) and ex.preceding.endswith("ENDING MARKER.")
    text = tokenizer.decode(ex.input_ids)
    assert "BEGINNING MARKER" not in text and "ENDING MARKER." in text
    assert load_instruction() in text  # the instruction is not what gets cut
    # Nearly full: only the context was cut, and only as much as needed.
    assert len(ex.input_ids) >= 96 - 8
    # A rationale that cannot fit even with no context is dropped, never cut.
    assert ChatEncoder(tokenizer, load_instruction(), max_length=40).encode("x", "long " * 60) is None


def test_collator_pads_right_with_ignored_labels():
    batch = PadCollator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# ----------------------------------------------------------------------------- recipes


def test_paper_recipe_validates():
    config = load_config(TrainConfig, RECIPES / "paper-train-llama3-8b.yaml", ["input=runs/filter", "output=runs/train"])
    assert config.base.spec == "hf:meta-llama/Meta-Llama-3-8B-Instruct"
    assert config.full_finetune and config.learning_rate == 2e-5 and config.lr_scheduler == "cosine"
    assert config.per_device_batch_size * config.gradient_accumulation_steps * 2 == 32  # x 2 GPUs
    assert config.max_length == 1024 and config.epochs == 20 and config.warmup_ratio == 0.03
    assert config.bf16 is True and config.gradient_checkpointing is True


@pytest.mark.parametrize("name", ["accelerate-fsdp.yaml", "accelerate-deepspeed-zero3.yaml"])
def test_accelerate_configs_parse(name):
    data = yaml.safe_load((RECIPES / name).read_text("utf-8"))
    assert data["num_processes"] == 2 and data["mixed_precision"] == "bf16"
    if "fsdp" in name:
        assert data["distributed_type"] == "FSDP"
        assert data["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert data["fsdp_config"]["fsdp_reshard_after_forward"] == "FULL_SHARD"
    else:
        assert data["distributed_type"] == "DEEPSPEED" and data["deepspeed_config"]["zero_stage"] == 3


def test_gradient_accumulation_has_one_source():
    """The train config is the only place it is set: the DeepSpeed config reads `auto` (filled from the
    TrainingArguments), and a launcher that sets a different number is refused before training."""
    from rationalyst.stages.train import gradient_accumulation_steps

    config = TrainConfig(input="x", output="y", gradient_accumulation_steps=8)
    ds = yaml.safe_load((RECIPES / "accelerate-deepspeed-zero3.yaml").read_text("utf-8"))["deepspeed_config"]
    assert ds.get("gradient_accumulation_steps", "auto") == "auto"
    assert gradient_accumulation_steps(config, {}) == 8
    assert gradient_accumulation_steps(config, {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "8"}) == 8
    with pytest.raises(InputError, match="gradient_accumulation_steps=4 .* train config 8"):
        gradient_accumulation_steps(config, {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "4"})


def test_fsdp_config_uses_the_current_sharding_key():
    """accelerate warns that fsdp_sharding_strategy is deprecated in favour of fsdp_reshard_after_forward."""
    fsdp = yaml.safe_load((RECIPES / "accelerate-fsdp.yaml").read_text("utf-8"))["fsdp_config"]
    assert "fsdp_sharding_strategy" not in fsdp and fsdp["fsdp_reshard_after_forward"] == "FULL_SHARD"
    assert fsdp["fsdp_cpu_ram_efficient_loading"] is True and fsdp["fsdp_sync_module_states"] is True


# ----------------------------------------------------------------------------- training


def _config(tmp_path: Path, **values) -> TrainConfig:
    jsonl = tmp_path / "records.jsonl"
    if not jsonl.exists():
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in fixture_records()), "utf-8")
    defaults = dict(
        input=jsonl,
        output=tmp_path / "out",
        max_steps=8,
        learning_rate=2e-3,
        per_device_batch_size=4,
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        warmup_ratio=0.0,
        lr_scheduler="constant",
        max_length=128,
        dev_fraction=0.2,
        logging_steps=2,
        eval_steps=4,
        save_steps=4,
        max_dev_records=8,
        base={"spec": "builtin:smollm2-135m", "device": "cpu"},
    )
    defaults.update(values)
    return TrainConfig.model_validate(defaults)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from rationalyst.stages.train import run

    tmp = tmp_path_factory.mktemp("train")
    start = time.perf_counter()
    result = run(_config(tmp))
    print(f"\ntraining run: {time.perf_counter() - start:.1f}s; {json.dumps(result.to_json())}")
    return result


def test_lora_training_lowers_loss_and_improves_dev_loglik(trained):
    assert trained.global_step == 8 and trained.resumed_from is None
    assert trained.first_train_loss is not None and trained.last_train_loss < trained.first_train_loss
    assert trained.dev_loglik_after > trained.dev_loglik_before
    rows = [json.loads(x) for x in (trained.output / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 4, 6, 8]  # logging_steps 2, and the first
    evaluated = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evaluated] == [4, 8]  # eval_steps 4, and the last step's pass not run twice
    assert trained.dev_loss == evaluated[-1]["eval_loss"]
    assert (trained.output / "loss.png").stat().st_size > 1000
    split = json.loads((trained.output / "split.json").read_text())
    assert not set(split["train_doc_ids"]) & set(split["dev_doc_ids"])
    assert split["counts"]["not_kept"] == 10 and split["counts"]["kept"] == 40


class LoadedAModel(Exception):
    """Raised where a training would load its base model: it got past every check before training."""


@pytest.fixture
def no_model_loading(monkeypatch):
    from rationalyst.stages import train as train_stage

    def no_loading(*_a, **_k):
        raise LoadedAModel

    monkeypatch.setattr(train_stage, "base_model_folder", no_loading)


def test_a_finished_training_is_not_redone_unless_its_config_or_records_change(trained, no_model_loading):
    from rationalyst.stages import train as train_stage

    tmp = trained.output.parent
    again = train_stage.run(_config(tmp, logging_steps=4, eval_steps=8))  # execution fields only
    assert again.to_json() == trained.to_json()
    # A field added later, at its default, leaves the finished training finished.
    assert train_stage.run(_config(tmp, train_documents_fraction=1.0)).to_json() == trained.to_json()
    # Another training in the same output is refused, not resumed from these checkpoints and recorded
    # as trained (a longer one of the same training resumes: test_resume_from_last_checkpoint).
    another = "holds a training of another config or other records; pass --overwrite"
    with pytest.raises(RationalystError, match=another):
        train_stage.run(_config(tmp, train_documents_fraction=0.5))
    with pytest.raises(RationalystError, match=another):
        train_stage.run(_config(tmp, learning_rate=1e-3))
    records = tmp / "records.jsonl"
    moved = tmp / "more-records.jsonl"
    moved.write_text(records.read_text() + json.dumps({**fixture_records()[0], "doc_id": "new", "id": "new"}) + "\n")
    with pytest.raises(RationalystError, match=another):
        train_stage.run(_config(tmp, input=moved, output=trained.output))
    with pytest.raises(LoadedAModel):  # elsewhere, the changed training starts
        train_stage.run(_config(tmp, learning_rate=1e-3, output=tmp / "elsewhere"))


def test_overwrite_deletes_the_training_s_files_and_nothing_else(tmp_path, no_model_loading):
    """``--overwrite`` on an output that also holds the input and the user's notes keeps both."""
    from rationalyst.stages import train as train_stage

    out = tmp_path / "out"
    (out / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (out / "started.json").write_text('{"resume_key": "of another training"}\n')
    (out / "summary.json").write_text("{}\n")
    (out / "notes.txt").write_text("mine\n")
    records = out / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in fixture_records()))
    with pytest.raises(RationalystError, match="another config"):
        train_stage.run(_config(tmp_path, input=records))
    with pytest.raises(LoadedAModel):
        train_stage.run(_config(tmp_path, input=records, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "records.jsonl"]


def test_training_encodes_a_fraction_of_the_training_documents_and_the_same_dev(tmp_path, monkeypatch):
    from rationalyst.stages import train as train_stage

    class Encoded(Exception):
        pass

    def encoded(fraction: float) -> tuple[list[dict], list[dict]]:
        """The train and dev records `run` would encode at ``fraction``."""
        seen: list[list[dict]] = []

        def spy(encoder, records):
            seen.append(list(records))
            if len(seen) == 2:
                raise Encoded
            return [], {"too_long": 0, "truncated": 0}

        monkeypatch.setattr(train_stage, "encode_records", spy)
        (tmp_path / str(fraction)).mkdir()
        with pytest.raises(Encoded):
            train_stage.run(_config(tmp_path / str(fraction), train_documents_fraction=fraction))
        return seen[0], seen[1]

    full, full_dev = encoded(1.0)
    half, half_dev = encoded(0.5)
    full_docs, half_docs = {r["doc_id"] for r in full}, {r["doc_id"] for r in half}
    assert half_dev == full_dev and not half_docs & {r["doc_id"] for r in full_dev}
    assert half_docs < full_docs and len(half_docs) == round(len(full_docs) / 2)
    assert half == [r for r in full if r["doc_id"] in half_docs]


def test_adapter_weights_moved_from_init(trained):
    from safetensors.torch import load_file

    weights = load_file(str(trained.adapter / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.abs().max() > 0 for v in lora_b.values())  # lora_B starts at zero


def test_merged_model_reloads_and_generates(trained):
    from rationalyst.lm import SamplingParams, load_model

    assert (trained.merged / "model.safetensors").exists()
    model = load_model(f"hf:{trained.merged}", device="cpu")
    messages = [{"role": "user", "content": load_instruction() + "\n\nStory 3. The shop cut its prices by half."}]
    [[completion]] = model.generate([messages], SamplingParams(max_new_tokens=24))
    assert completion.text.strip()


def test_instruction_is_saved_beside_the_model_and_read_back_by_the_search(trained):
    from rationalyst.data.rationale_text import rationalist_instruction

    packaged = (resources.files("rationalyst") / "prompts" / "train" / "instruction.txt").read_text("utf-8").strip()
    for folder in (trained.merged, trained.output / "adapter"):
        assert (folder / "instruction.txt").read_text("utf-8").strip() == packaged
    custom = trained.merged.parent / "custom-model"
    custom.mkdir(exist_ok=True)
    (custom / "instruction.txt").write_text("Say why the next sentence follows.\n", "utf-8")
    assert rationalist_instruction(f"hf:{custom}") == "Say why the next sentence follows."
    (custom / "instruction.txt").write_text("", "utf-8")  # a paper-release model: the text alone
    assert rationalist_instruction(f"hf:{custom}") is None


@pytest.mark.slow
def test_warmup_ratio_warms_up_on_this_transformers(tmp_path):
    """Four steps with half of them warming up (ceil(4 * 0.5) = 2 steps, linear from 0): the learning
    rates the steps ran with are 0, half the peak, then the peak. Ignored warmup would run step 1 at
    the peak."""
    from rationalyst.stages.train import run

    run(_config(tmp_path, max_steps=4, warmup_ratio=0.5, learning_rate=1e-3, lr_scheduler="constant_with_warmup",
                logging_steps=1, dev_fraction=0.0))
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["learning_rate"] for r in rows if "learning_rate" in r}
    assert [lr[1], lr[2], lr[3]] == pytest.approx([0.0, 0.5e-3, 1e-3])


def test_paper_release_profile_trains_on_the_text_alone(tmp_path, tokenizer):
    encoder = ChatEncoder(tokenizer, None, max_length=256)
    ex = encoder.encode("The bridge was closed for repairs.\n", "Traffic must go around.")
    prompt = tokenizer.decode(ex.input_ids[: next(i for i, label in enumerate(ex.labels) if label != IGNORE_INDEX)])
    assert prompt == tokenizer.apply_chat_template(
        [{"role": "user", "content": "The bridge was closed for repairs."}], add_generation_prompt=True, tokenize=False
    )


@pytest.mark.slow
def test_model_loads_after_the_training_arguments_and_is_freed_before_the_merged_reload(tmp_path, monkeypatch):
    """Under accelerate launch, TrainingArguments set up the distributed state and DeepSpeed's config that
    transformers' loading reads (ZeRO-3 init, FSDP cpu_ram_efficient_loading): the model must load after
    them. After training, the trained model (trainer, optimizer, LoRA-merged copy) must be gone before
    rank 0 loads the merged model to score the dev set."""
    import gc
    import weakref

    import accelerate
    import transformers

    from rationalyst.stages import train

    accelerate.PartialState._reset_state()
    made: list[str] = []
    real_post_init = transformers.TrainingArguments.__post_init__

    def post_init(self):
        made.append("arguments")
        real_post_init(self)

    loaded: list[weakref.ref] = []
    real_load = train._load_model

    def load(folder, config):
        assert made == ["arguments"] and accelerate.PartialState._shared_state, "model loaded before the arguments"
        model = real_load(folder, config)
        loaded.append(weakref.ref(model))
        return model

    alive_at_reload: list[bool] = []
    real_dev = train.dev_log_likelihood

    def dev(spec, *args, **kwargs):
        if spec.endswith("merged"):
            gc.collect()
            alive_at_reload.append(loaded[0]() is not None)
        return real_dev(spec, *args, **kwargs)

    monkeypatch.setattr(transformers.TrainingArguments, "__post_init__", post_init)
    monkeypatch.setattr(train, "_load_model", load)
    monkeypatch.setattr(train, "dev_log_likelihood", dev)
    result = train.run(_config(tmp_path, max_steps=2, save_steps=2))
    assert result.global_step == 2 and len(loaded) == 1
    assert alive_at_reload == [False]


@pytest.mark.slow
def test_resume_from_last_checkpoint(tmp_path):
    from rationalyst.stages.train import run

    quick = dict(save_steps=1, dev_fraction=0.0, logging_steps=1)
    first = run(_config(tmp_path, max_steps=2, **quick))
    assert first.global_step == 2
    second = run(_config(tmp_path, max_steps=4, **quick))
    assert second.resumed_from is not None and second.resumed_from.endswith("checkpoint-2")
    state = json.loads((tmp_path / "out" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # The resumed run logged steps 3 and 4 only: each train step appears once in metrics.jsonl.
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 4


@pytest.mark.slow
def test_a_resumed_run_logs_evaluates_and_saves_at_its_own_steps(tmp_path):
    """logging_steps, eval_steps and save_steps are execution fields: a run resumed with other values
    follows them (transformers alone would keep the checkpoint's)."""
    from rationalyst.stages.train import run

    run(_config(tmp_path, max_steps=2, save_steps=1, logging_steps=1, eval_steps=1))
    second = run(_config(tmp_path, max_steps=6, save_steps=3, logging_steps=1, eval_steps=2))
    assert second.resumed_from is not None and second.resumed_from.endswith("checkpoint-2")
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows if "eval_loss" in r}) == [1, 2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]


@pytest.mark.slow
def test_sigkill_then_resume_through_the_command_line(tmp_path):
    """A real kill: the module's command line is SIGKILLed after its 2nd checkpoint, then rerun."""
    from rationalyst.stages.train import last_checkpoint

    config = _config(tmp_path, max_steps=6, save_steps=1, dev_fraction=0.0, logging_steps=1)
    overrides = [
        f"input={config.input}", f"output={config.output}", "max_steps=6", "save_steps=1", "save_total_limit=10",
        "dev_fraction=0.0", "logging_steps=1", "learning_rate=0.002", "max_length=128", "base.device=cpu",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rationalyst.stages.train", *overrides],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600  # generous: a loaded 2-core machine needs minutes to get there
        while not (config.output / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
            assert proc.poll() is None, "training exited before its second checkpoint"
            assert time.monotonic() < deadline, "no second checkpoint within 600 s"
            time.sleep(0.2)
        time.sleep(0.5)  # let the checkpoint's files land
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (config.output / "merged").exists()
    killed_at = int(Path(last_checkpoint(config.output)).name.split("-")[1])
    assert 2 <= killed_at < 6
    done = subprocess.run(
        [sys.executable, "-m", "rationalyst.stages.train", *overrides], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((config.output / "summary.json").read_text())
    assert summary["resumed_from"].endswith(f"checkpoint-{killed_at}") and summary["global_step"] == 6
    assert (config.output / "merged" / "model.safetensors").exists()


def test_incomplete_checkpoint_is_passed_over(tmp_path):
    from rationalyst.stages.train import last_checkpoint

    checkpoints = tmp_path / "checkpoints"
    assert last_checkpoint(tmp_path) is None
    (checkpoints / "checkpoint-2").mkdir(parents=True)
    (checkpoints / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (checkpoints / "checkpoint-3").mkdir()  # killed while saving: no trainer state yet
    (checkpoints / "checkpoint-3" / "model.safetensors").write_text("partial")
    assert last_checkpoint(tmp_path) == str(checkpoints / "checkpoint-2")


def test_train_command_line(tmp_path):
    """`rationalyst train` wires flags and --set overrides into TrainConfig and reports the result."""
    from typer.testing import CliRunner

    from rationalyst.cli import app

    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in fixture_records(n_docs=4, per_doc=3)), "utf-8")
    args = ["train", "--input", str(jsonl), "--output", str(tmp_path / "out"), "--set", "max_steps=2",
            "--set", "max_length=96", "--set", "lora.r=4", "--set", "logging_steps=1", "--set", "dev_fraction=0.25"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "merged model: hf:" in result.output and (tmp_path / "out" / "merged" / "config.json").exists()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["global_step"] == 2


def test_text_that_spells_a_control_token_stays_text(tokenizer):
    """A chat log or code in a document holds ``<|im_end|>`` as characters: the prompt keeps them
    characters (the ends of turn are the template's own), and so does a rationale; text without such
    spellings is tokenized exactly as the template renders it."""
    encoder = ChatEncoder(tokenizer, load_instruction(), max_length=512)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    preceding = 'reply = text.split("<|im_end|>")[0]  # drop the end marker\nassistant: ok'
    ex = encoder.encode(preceding, "It cuts the <|im_end|> marker off.")
    labelled = next(i for i, label in enumerate(ex.labels) if label != IGNORE_INDEX)
    prompt = ex.input_ids[:labelled]
    own = encoder.prompt_ids("The bridge was closed for repairs.").count(im_end)  # the template's own turns' ends
    assert own >= 1 and prompt.count(im_end) == own
    assert tokenizer.decode(prompt) == encoder.prompt_text(preceding)  # every character still there
    assert _unmasked(ex).count(im_end) == 1 and tokenizer.decode(_unmasked(ex)) == "It cuts the <|im_end|> marker off.<|im_end|>"
    clean = "The bridge was closed for repairs."
    assert encoder.prompt_ids(clean) == tokenizer(encoder.prompt_text(clean), add_special_tokens=False)["input_ids"]
