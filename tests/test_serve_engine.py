"""The server's engine in process (`serve.engine`), with stand-in models that carry the default
model's real tokenizer: token texts and offsets, seeds, token-id prompts and echo, against references
computed here independently of the engine."""

from __future__ import annotations

import pytest

from rationalyst.lm.base import Completion, LanguageModel
from rationalyst.lm.builtin import builtin_path
from rationalyst.lm.gguf_cache import converted_gguf
from rationalyst.lm.tokenization import HFTextCodec
from rationalyst.serve.engine import ServedModel


@pytest.fixture(scope="module")
def codec() -> HFTextCodec:
    """SmolLM2's byte-level BPE tokenizer (no model weights)."""
    return HFTextCodec.from_pretrained(converted_gguf(builtin_path("smollm2-135m")), name="smollm2")


class _Tokenizing(LanguageModel):
    """A model of which only the tokenizer is used."""

    name = "tokenizing"

    def __init__(self, codec: HFTextCodec) -> None:
        self.codec = codec

    def generate(self, prompts, params):
        raise NotImplementedError

    def score_many(self, requests):
        raise NotImplementedError


def _byte_level_texts(tokenizer, ids: list[int]) -> list[str]:
    """Reference token texts from the tokens' bytes: each token's text is the characters its bytes
    complete. Byte-level BPE spells byte b as chr(b) where that is printable Latin-1, else as
    chr(256 + k) for the k-th other byte (GPT-2's map)."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    others = [b for b in range(256) if b not in printable]
    byte_of = {chr(b): b for b in printable} | {chr(256 + k): b for k, b in enumerate(others)}
    texts, data, given = [], b"", ""
    for token in tokenizer.convert_ids_to_tokens(ids):
        data += bytes(byte_of[char] for char in token)
        complete = data.decode("utf-8", errors="ignore")  # drops only a character still cut at the end
        texts.append(complete[len(given) :])
        given = complete
    return texts


def test_generated_token_texts_hold_a_multibyte_character_until_its_last_byte(codec):
    """A character split over byte tokens is the text of the token that completes it; the tokens before
    give only the characters they complete. The texts join to the completion and the offsets are where each text starts."""
    served = ServedModel("m", _Tokenizing(codec))

    def run_of(text: str, start: int = 0):
        ids = codec.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, served.generated(Completion(text, ids, [-0.5] * len(ids), "stop"), start)

    ids, run = run_of(" naïve café ☺ ok", start=4)
    # By hand: ☺ (3 UTF-8 bytes) is split over three tokens, the first also carrying the space.
    assert codec.tokenizer.convert_ids_to_tokens(ids)[3:6] == ["Ġâ", "ĺ", "º"]
    assert run.pieces == [" na", "ïve", " café", " ", "", "☺", " ok"]
    assert run.offsets == [4, 7, 10, 15, 16, 16, 17]
    assert run.ids == ids and run.logprobs == [-0.5] * 7
    for text in ["日本語のテキスト", " 😀 done", "naïve 😀😀 ☺"]:
        ids, run = run_of(text)
        assert run.pieces == _byte_level_texts(codec.tokenizer, ids)
        assert "".join(run.pieces) == text
        assert run.offsets == [len("".join(run.pieces[:i])) for i in range(len(ids))]
    # A character the last token leaves cut stays visible as U+FFFD rather than vanishing.
    ids = codec.tokenizer("☺", add_special_tokens=False)["input_ids"][:-1]
    assert served.generated(Completion("", ids, [0.0] * len(ids), "length"), 0).pieces == ["", "\ufffd"]


class _SeedStream:
    """A decode loop that answers at once, seeding sample j of a prompt ``seed + j`` as llama.cpp's
    stream does, and spelling that seed as the sample's text."""

    def __init__(self) -> None:
        self.done: list = []

    @property
    def busy(self) -> bool:
        return bool(self.done)

    def add(self, prompts, params, tags):
        self.done += [(tag, [Completion(f"{p.seed + j}", [], [], "stop") for j in range(p.n)], 0.0)
                      for tag, p in zip(tags, params)]

    def step(self):
        done, self.done = self.done, []
        return done


class _SeedMixing(LanguageModel):
    """Samples spelled by their seeds (sample j of a prompt seeded s is ``s + j``), from one mixed
    engine call of batched requests."""

    name = "seeds"

    def generate(self, prompts, params):
        raise AssertionError("the server samples a batch through generate_mixed or the stream")

    def generate_mixed(self, prompts, params):
        return [[Completion(f"{p.seed + j}", [], [], "stop") for j in range(p.n)] for p in params]

    def score_many(self, requests):
        raise NotImplementedError


class _SeedStreaming(_SeedMixing):
    """The same, through a decode loop that requests join (as hf and llamacpp are served)."""

    def open_stream(self):
        return _SeedStream()


def test_no_two_samples_of_a_request_share_a_seed():
    """Two prompts, three samples each, seed 7: prompt i is seeded 7 + 3i, so the six samples are
    seeded 7..12 (with 7 + i, prompt 0's samples 8 and 9 were prompt 1's first two). Through the
    decode loop (hf, llamacpp) and through a mixed engine call of requests batched together."""
    import threading

    from rationalyst.lm.base import SamplingParams
    from rationalyst.serve.engine import Batcher, ServerLimits, _Job
    from rationalyst.serve.protocol import CompletionRequest

    served = ServedModel("m", _SeedStreaming())
    request = CompletionRequest(model="m", prompt=["a", "a"], n=3, temperature=1.0, seed=7, max_tokens=4)
    assert [c.text for c in served.complete(request, ServerLimits()).choices] == ["7", "8", "9", "10", "11", "12"]

    batcher = Batcher(_SeedMixing(), threading.Lock())
    jobs = [_Job(["a", "a"], SamplingParams(n=3, temperature=1.0, seed=7)), _Job(["b"], SamplingParams(n=2, seed=0))]
    batcher._run(jobs)
    assert [[c.text for c in row] for row in jobs[0].result] == [["7", "8", "9"], ["10", "11", "12"]]
    assert [[c.text for c in row] for row in jobs[1].result] == [["0", "1"]]


@pytest.mark.llamacpp
def test_served_llamacpp_samples_are_the_model_s_own_and_all_differ():
    """On the real llama.cpp SmolLM (served through its decode loop): a request of two equal prompts,
    two samples each, gets the four samples llamacpp's own generate gives (sample k of the call seeded
    seed + k), all different (prompt i seeded seed + i made choices 1 and 2 one sample)."""
    pytest.importorskip("llama_cpp")
    from rationalyst.lm import load_model
    from rationalyst.lm.base import SamplingParams
    from rationalyst.serve.engine import ServerLimits
    from rationalyst.serve.protocol import CompletionRequest

    model = load_model("llamacpp:builtin:smollm2-135m")
    served = ServedModel("m", model)
    request = CompletionRequest(model="m", prompt=["Once upon a time"] * 2, n=2, temperature=1.0, seed=7, max_tokens=12)
    texts = [c.text for c in served.complete(request, ServerLimits()).choices]
    own = model.generate(["Once upon a time"] * 2, SamplingParams(n=2, temperature=1.0, seed=7, max_new_tokens=12))
    assert texts == [c.text for row in own for c in row]
    assert len(set(texts)) == 4


class _Scoring(_Tokenizing):
    """Scores token t at -t/1000 whatever precedes it, after the tokenization the model contract gives
    (`HFTextCodec.split`, as the hf backend); records each token sequence it scored."""

    def __init__(self, codec: HFTextCodec) -> None:
        super().__init__(codec)
        self.scored: list[list[int]] = []

    def score_many(self, requests):
        from rationalyst.lm.base import ContinuationScore

        out = []
        for r in requests:
            seqs = [self.codec.split(r.context, c) for c in r.continuations]
            self.scored += [s.token_ids for s in seqs]
            out.append([ContinuationScore(s.continuation_ids, [-t / 1000 for t in s.continuation_ids]) for s in seqs])
        return out


@pytest.fixture(scope="module")
def bos_codec() -> HFTextCodec:
    """SmolLM2's tokenizer made to add a BOS to text, with a chat template that writes the BOS itself
    (Llama-3's arrangement: chat contexts are tokenized without added special tokens)."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted_gguf(builtin_path("smollm2-135m"))))
    bos = "<|endoftext|>"
    tokenizer.bos_token = bos
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))]
    )
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}<|im_start|>assistant\n"
    )
    return HFTextCodec(tokenizer, name="bos-adding")


def test_token_ids_of_a_chat_context_whose_template_writes_the_bos_are_scored_as_given(bos_codec):
    """The openai backend's echo of a chat context: ids without added special tokens, the template's BOS
    first. They were re-tokenized with a second BOS added and refused (400); they are scored as sent."""
    from rationalyst.serve.engine import ApiError, ServerLimits
    from rationalyst.serve.protocol import CompletionRequest

    bos = bos_codec.tokenizer.bos_token_id
    chat = [{"role": "user", "content": "What is 2+2?"}]
    ids = bos_codec.split(chat, " 4").token_ids  # what `OpenAIModel._score_pair` sends
    assert ids[0] == bos and ids[1] != bos
    model = _Scoring(bos_codec)
    served = ServedModel("m", model)
    request = CompletionRequest(model="m", prompt=ids, echo=True, logprobs=1, max_tokens=0)
    logprobs = served.complete(request, ServerLimits()).choices[0].logprobs
    assert model.scored == [ids]
    assert logprobs.token_logprobs == [None] + [-t / 1000 for t in ids[1:]]
    assert logprobs.tokens[0] == "" and "".join(logprobs.tokens) == bos_codec.render(chat)[len("<|endoftext|>") :] + " 4"
    # Raw text's ids carry the added BOS and are served as before; text's ids without it cannot be
    # given to a model that adds one, and are refused rather than scored after a BOS not sent.
    text_ids = bos_codec.split("Question: 2+2?", " 4").token_ids
    assert served.prompt_text(text_ids) == "Question: 2+2? 4"
    with pytest.raises(ApiError, match="not what the model's tokenizer makes"):
        served.prompt_text(text_ids[1:])


class _RecipeSeeded:
    """A guided search as `search.chat.GuidedSearch` seeds it: a request's seed, else the recipe's (0);
    the answer names the seed it was solved with."""

    def __call__(self, messages, params):
        (answer,) = self.many([(messages, params)])
        return answer

    def many(self, requests):
        return [f"seed {0 if p.seed is None else p.seed}" for _, p in requests]


@pytest.mark.parametrize("batched", [True, False])
def test_guided_choices_without_a_seed_are_solved_with_different_seeds(batched):
    """n=3 without a seed gave three times the recipe seed's answer; now one random base per request,
    choice j solved with base + j. With a seed s: s, s + 1, s + 2, as before."""
    from rationalyst.serve.engine import GuidedModel, ServerLimits
    from rationalyst.serve.protocol import ChatCompletionRequest

    fn = _RecipeSeeded()
    guided = GuidedModel("rationalyst-guided", fn if batched else fn.__call__, [])
    messages = [{"role": "user", "content": "What is 2+2?"}]

    def answers(**extra) -> list[str]:
        request = ChatCompletionRequest(model="rationalyst-guided", messages=messages, n=3, temperature=1.0, **extra)
        return [c.message.content for c in guided.chat(request, ServerLimits()).choices]

    seeds = [int(a.removeprefix("seed ")) for a in answers()]
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
    assert answers(seed=5) == ["seed 5", "seed 6", "seed 7"]


def test_null_means_the_default_and_openai_s_other_roles_are_taken():
    """OpenAI clients send null for fields they leave unset, ``developer`` for the system role, tool
    results, and an assistant turn with null content (a tool call): all were 400s."""
    from pydantic import ValidationError

    from rationalyst.serve.protocol import ChatCompletionRequest, CompletionRequest

    text = {"model": "m", "prompt": "hi"}
    for field in ["max_tokens", "temperature", "top_p", "n", "echo", "stream", "logprobs", "seed", "stop", "best_of"]:
        assert CompletionRequest.model_validate(text | {field: None}) == CompletionRequest.model_validate(text), field
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    for field in ["temperature", "top_p", "n", "logprobs", "stream", "max_tokens", "top_logprobs"]:
        assert ChatCompletionRequest.model_validate(chat | {field: None}) == ChatCompletionRequest.model_validate(chat), field
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": None})  # null for a required field stays an error

    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "content": "4", "tool_call_id": "c1"},
    ]
    assert ChatCompletionRequest.model_validate({"model": "m", "messages": messages}).plain_messages() == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": ""}, {"role": "tool", "content": "4"},
    ]
    with pytest.raises(ValidationError, match="a user message needs content"):
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": None}]})
