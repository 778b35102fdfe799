"""The `hf` backend: transformers models on CPU or CUDA.

Scoring is the hot path of the whole method (Stage 3 filtering and Stage 5 implicit supervision are
both "log-prob of K continuations after one context"), so it never recomputes a context: the tokens
every continuation shares are run once, their KV cache is copied across the batch with
``batch_repeat_interleave``, and one right-padded forward pass scores all K continuations. With right
padding no attention mask is needed: causal attention keeps each real token from seeing the padding
after it. `score_full_passes` is the plain reference (one full forward pass per continuation) that
tests and benchmarks compare against.

With ``prefix_cache > 0`` the model also keeps the KV of its last few single prompts (`PrefixCache`):
a scoring trunk or a generation prompt that extends one of them runs only its new tokens. The step
search needs this, its trajectory growing one step at a time; in a batch of many problems each row
reuses its own stored prefix (`HFModel._prefill`). Generation is one decode loop that prompts join
between steps and leave once their samples have all finished (`hf_decode`, `hf_stream`: continuous
batching).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, StopStringCriteria

from rationalyst.console import progress
from rationalyst.errors import ModelNotFoundError, PromptTooLongError, RationalystError
from rationalyst.iterutils import batched
from rationalyst.lm.base import (
    Completion,
    ContinuationScore,
    DocumentScoreRequest,
    LanguageModel,
    Prompt,
    SamplingParams,
    ScoreRequest,
)
from rationalyst.lm.boundary import SplitSequence, shared_prefix_length
from rationalyst.lm.hf_decode import DecodeSession, RowGroup
from rationalyst.lm.hf_stream import HFStream
from rationalyst.lm.model_location import not_found_hint, require_model_location
from rationalyst.lm.precision import resolve_dtype
from rationalyst.lm.prefix_cache import PrefixCache, cache_argument, cache_layers, common_prefix_length, output_cache
from rationalyst.lm.tokenization import HFTextCodec

log = logging.getLogger(__name__)

#: What a second prefill pass costs, in row-columns of a forward pass (`HFModel._prefill`): one pass more
#: is worth it only when it spares the batch more recomputation than this.
SECOND_PASS_COST = 32

#: Stop-string checks kept built (`HFModel._stop_criteria`, least recently used dropped first): each scans
#: the vocabulary to build, and holds a few MiB of tables; a server takes its stop strings from requests,
#: so the distinct sets are not bounded by the program.
STOP_CHECKS = 32


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class HFModel(LanguageModel):
    """A transformers causal LM behind the `LanguageModel` contract."""

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str = "", batch_size: int = 8, prefix_cache: int = 0
    ) -> None:
        self.max_length: int | None = getattr(model.config, "max_position_embeddings", None)
        #: The prompt rules (render, encode, joint split) shared with the vllm and openai backends.
        self.codec = HFTextCodec(tokenizer, name=name, max_length=self.max_length)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.eos_ids = self._eos_ids()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        #: Tokens run through the model by scoring calls (padding excluded): what prefix reuse saves.
        self.forwarded_tokens = 0
        #: The same per request of the last `score_many` / `score_in_documents` call (a batch's cost per row).
        self.forwarded_per_request: list[int] = []
        #: Prompt positions run through the model by `generate`: rows times columns of every prefill pass
        #: (left padding included: it costs the same), and the last prompt column once per sample.
        self.generation_forwarded = 0
        self._stop_checks: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        #: KV of recent single prompts (scoring trunks, generation prompts); capacity 0 disables it.
        self.prefix_cache = PrefixCache(prefix_cache)
        # The KV-cache argument of forward and generate: `cache` (transformers >= 5.2x), `past_key_values` before.
        self.cache_arg = cache_argument(self.model)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        name: str = "",
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        prefix_cache: int = 0,
    ) -> HFModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        require_model_location(str(path))
        dev = resolve_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=resolve_dtype(dtype, dev))
        except OSError as exc:
            raise ModelNotFoundError(f"cannot load model {str(path)!r}: {exc}{not_found_hint(str(path))}") from None
        return cls(
            model.to(dev), tokenizer, name=name or f"hf:{path}", batch_size=batch_size, prefix_cache=prefix_cache
        )

    def batch_dependence(self) -> str | None:
        """Half-precision weights: a batched matmul rounds a row differently from the same row alone
        (measured on an AMX CPU in bfloat16: 2.32 steps a problem at batch 1, 2.50 at 8). float32 on CPU
        and on CUDA gives the same traces at every batch size (tests/test_batch_search.py, test_cuda.py)."""
        dtype = next(self.model.parameters()).dtype
        if dtype in (torch.bfloat16, torch.float16):
            name = str(dtype).removeprefix("torch.")
            return f"its weights are {name}: a batched matmul rounds a row differently from the row alone; float32 does not"
        return None

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if not ids:
            raise RationalystError(f"{self.name}: the model defines no end-of-sequence token")
        return ids

    # ----------------------------------------------------------------------------- prompts

    def render(self, prompt: Prompt) -> str:
        return self.codec.render(prompt)

    def _encode(self, prompt: Prompt) -> list[int]:
        return self.codec.encode(prompt)

    def split(self, context: Prompt, continuation: str) -> SplitSequence:
        """Tokenize context + continuation jointly and split at the context's end (see `boundary`)."""
        return self.codec.split(context, continuation)

    # ----------------------------------------------------------------------------- scoring

    @torch.inference_mode()
    def score_many(self, requests: Sequence[ScoreRequest]) -> list[list[ContinuationScore]]:
        # Each request's trunk is the prefix its continuations share; trunks of several requests run
        # in one batch.
        groups = []
        for request in requests:
            seqs = [self.split(request.context, c) for c in request.continuations]
            trunk = seqs[0].token_ids[: shared_prefix_length(seqs)] if seqs else []
            groups.append((trunk, seqs))
        return self._score_groups(groups)

    @torch.inference_mode()
    def score_in_documents(self, requests: Sequence[DocumentScoreRequest]) -> list[list[ContinuationScore]]:
        """Each request's pairs scored on top of one pass over its document (`_score_groups`).

        A document longer than the model's limit is cut to the limit: every pair fits in it (`split`
        raises `PromptTooLongError` for one that does not), so no pair shares more than that many
        tokens with the document, and the cut trunk serves each pair as the whole one would; run
        whole, it would pass positions the model has not got (an IndexError on learned positions).
        """
        groups = []
        for request in requests:
            trunk = self._encode(request.document) if request.document else []
            pairs = [self.split(context, following) for context, following in request.pairs]
            if self.max_length is not None:
                trunk = trunk[: self.max_length]
            groups.append((trunk, pairs))
        return self._score_groups(groups)

    def _score_groups(self, groups: Sequence[tuple[list[int], list[SplitSequence]]]) -> list[list[ContinuationScore]]:
        """Score every group's sequences, each reusing the KV cache of the prefix it shares with its trunk.

        A sequence that is a prefix of its trunk (a document's own text) is scored by the trunk's pass
        alone; any other sequence (a rationale inserted into the document) runs only the tokens after
        the prefix it shares with the trunk. Exactness does not depend on how the texts were built:
        the shared prefix is measured on token ids.
        """
        results: list[list[ContinuationScore | None]] = [[None] * len(seqs) for _, seqs in groups]
        self.forwarded_per_request = [0] * len(groups)
        self.prefix_cache.reserve(min(len(groups), self.batch_size))
        order = [i for i, (_, seqs) in enumerate(groups) if seqs]
        for chunk in batched(order, self.batch_size):
            trunks = [groups[g][0] for g in chunk]
            sliced, branches = [], []
            for row, g in enumerate(chunk):
                for j, seq in enumerate(groups[g][1]):
                    shared = common_prefix_length(seq.token_ids, trunks[row])
                    if shared == len(seq.token_ids) and seq.n_context >= 1:
                        sliced.append((row, g, j, seq))
                    else:
                        # Keep one context token out of the cache, so the logits that predict the
                        # first scored token come out of the branch pass.
                        keep = max(min(shared, seq.n_context) - 1, 0)
                        branches.append((row, keep, g, j, seq))
            cache = None
            if any(trunks):
                cache = self._run_trunks(trunks, sliced, results, chunk)
            self._run_branches(cache, branches, results)
        return [list(r) for r in results]  # type: ignore[arg-type]

    def _run_trunks(self, trunks, sliced, results, groups) -> Any:
        """One batched pass over the trunks; scores the sequences that lie inside them.

        Each trunk may start from the prefix cache (its trajectory's previous scoring trunk): then only
        its tokens past its stored prefix run, as long as no sequence needs logits from inside that
        prefix. Rows reusing different lengths get an attention mask over the gaps, and the returned
        cache is made contiguous again (row i's trunk at positions 0..len-1) for the branches.
        """
        limits = [len(t) - 1 for t in trunks]
        for row, _, _, seq in sliced:
            limits[row] = min(limits[row], seq.n_context - 1)
        found = [self.prefix_cache.peek(t, limit) if t else (0, None) for t, limit in zip(trunks, limits)]
        reuse = [n for n, _ in found]
        longest = max(reuse)
        rows = [(t or [self.pad_id])[n:] for t, n in zip(trunks, reuse)]
        batch = self._right_pad(rows)
        width = batch.shape[1]
        kwargs: dict[str, Any] = {}
        if longest > 0:
            first = next(stored for _, stored in found if stored is not None)
            layers = []
            for layer, (k0, v0) in enumerate(first):
                keys = k0.new_zeros((len(trunks), k0.shape[1], longest, k0.shape[3]))
                values = v0.new_zeros((len(trunks), v0.shape[1], longest, v0.shape[3]))
                for i, (n, stored) in enumerate(found):
                    if n:
                        keys[i, :, :n] = stored[layer][0][0, :, :n]
                        values[i, :, :n] = stored[layer][1][0, :, :n]
                layers.append((keys, values))
            kwargs[self.cache_arg] = DynamicCache(ddp_cache_data=layers)
            positions = torch.stack([torch.arange(n, n + width) for n in reuse])
            if any(n != longest for n in reuse):
                mask = torch.zeros((len(trunks), longest + width), dtype=torch.long)
                for i, n in enumerate(reuse):
                    mask[i, :n] = 1
                    mask[i, longest : longest + len(rows[i])] = 1
                kwargs["attention_mask"] = mask.to(self.device)
            kwargs["position_ids"] = positions.to(self.device)
            self.prefix_cache.reused_tokens += sum(reuse)
        columns = sorted(
            {p - reuse[row] for row, _, _, seq in sliced for p in range(seq.n_context - 1, len(seq.token_ids) - 1)}
        )
        keep = torch.tensor(columns or [0], device=self.device)
        out = self.model(input_ids=batch, use_cache=True, logits_to_keep=keep, **kwargs)
        for row, (t, n) in enumerate(zip(trunks, reuse)):
            ran = len(t) - n
            self.forwarded_tokens += ran
            self.forwarded_per_request[groups[row]] += ran
        cache = output_cache(out)
        if longest > 0 and any(n != longest for n in reuse):
            cache = self._contiguous(cache, trunks, reuse, longest)
        for row, t in enumerate(trunks):
            if t:
                self.prefix_cache.store(t, cache, row=row)
        index = {c: i for i, c in enumerate(columns)}
        for row, g, j, seq in sliced:
            wanted = [index[p - reuse[row]] for p in range(seq.n_context - 1, len(seq.token_ids) - 1)]
            logits = out.logits[row, wanted]
            results[g][j] = self._gather_rows(logits, seq.token_ids[seq.n_context :])
        return cache

    @staticmethod
    def _contiguous(cache, trunks, reuse, longest) -> DynamicCache:
        """Row i's reused prefix (positions 0..reuse_i) and its new tokens (after the ``longest``
        reused columns) side by side, as if the row had run without a gap."""
        size = max(len(t) for t in trunks)
        layers = []
        for layer in cache.layers:
            k, v = layer.keys, layer.values
            keys = k.new_zeros((k.shape[0], k.shape[1], size, k.shape[3]))
            values = v.new_zeros((v.shape[0], v.shape[1], size, v.shape[3]))
            for i, (t, n) in enumerate(zip(trunks, reuse)):
                keys[i, :, :n], values[i, :, :n] = k[i, :, :n], v[i, :, :n]
                rest = len(t) - n
                keys[i, :, n : n + rest] = k[i, :, longest : longest + rest]
                values[i, :, n : n + rest] = v[i, :, longest : longest + rest]
            layers.append((keys, values))
        return DynamicCache(ddp_cache_data=layers)

    def _run_branches(self, cache, branches, results) -> None:
        """Batched passes over each branch's own tokens, on top of its trunk's cached prefix.

        Rows keep different numbers of trunk tokens: the cache is cut to the longest, and an attention
        mask hides from each row the cached positions past its own prefix; position ids continue from
        the row's own prefix length, so every row computes exactly its unbatched values.
        """
        # A trunk cache with sliding-window (or linear-attention) layers holds only its last window, not
        # the prefix a branch reuses (`cache_layers` is None): then every branch runs whole, from its
        # first token, as a plain forward pass would.
        layers = cache_layers(cache) if cache is not None else None
        if layers is None:
            branches = [(row, 0, g, j, seq) for row, _, g, j, seq in branches]
        # Similar lengths together: less right padding (cheap masked cache columns matter less).
        branches = sorted(branches, key=lambda b: len(b[4].token_ids) - b[1])
        for chunk in batched(branches, self.batch_size):
            longest = max(keep for _, keep, *_ in chunk)
            suffixes = [seq.token_ids[keep:] for _, keep, _, _, seq in chunk]
            batch = self._right_pad(suffixes)
            width = batch.shape[1]
            mask = torch.zeros((len(chunk), longest + width), dtype=torch.long)
            positions = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (_, keep, _, _, seq) in enumerate(chunk):
                mask[i, :keep] = 1
                mask[i, longest : longest + len(suffixes[i])] = 1
                positions[i] = torch.arange(keep, keep + width)
            kwargs: dict[str, Any] = {}
            if longest > 0:
                rows = torch.tensor([row for row, *_ in chunk], device=self.device)
                kwargs[self.cache_arg] = DynamicCache(
                    ddp_cache_data=[
                        (keys[rows, :, :longest], values[rows, :, :longest]) for keys, values in layers
                    ]
                )
            logits = self.model(
                input_ids=batch, attention_mask=mask.to(self.device), position_ids=positions.to(self.device),
                use_cache=longest > 0, **kwargs,
            ).logits
            self.forwarded_tokens += sum(len(s) for s in suffixes)
            for i, (_, keep, g, j, seq) in enumerate(chunk):
                self.forwarded_per_request[g] += len(suffixes[i])
                start = seq.n_context - keep
                results[g][j] = self._gather_rows(logits[i, start - 1 : len(suffixes[i]) - 1], seq.continuation_ids)

    @torch.inference_mode()
    def score_full_passes(self, context: Prompt, continuations: Sequence[str]) -> list[ContinuationScore]:
        """The plain reference: one full forward pass over context + continuation, per continuation."""
        scores = []
        for continuation in continuations:
            seq = self.split(context, continuation)
            ids = torch.tensor([seq.token_ids], device=self.device)
            logits = self.model(input_ids=ids, use_cache=False).logits[0]
            self.forwarded_tokens += len(seq.token_ids)
            scores.append(self._gather_rows(logits[seq.n_context - 1 : -1], seq.continuation_ids))
        return scores

    def _right_pad(self, rows: Sequence[list[int]]) -> torch.Tensor:
        width = max(len(r) for r in rows)
        batch = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            batch[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return batch.to(self.device)

    def _gather_rows(self, logits: torch.Tensor, targets: Sequence[int]) -> ContinuationScore:
        """Log-probs of ``targets[i]`` under the logits row ``i`` (the row that predicts it)."""
        ids = torch.tensor(list(targets), dtype=torch.long, device=logits.device)
        values = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, None]).squeeze(-1)
        token_ids = ids.tolist()
        return ContinuationScore(token_ids, values.tolist(), self.tokenizer.convert_ids_to_tokens(token_ids))

    # ----------------------------------------------------------------------------- generation

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """With a seed, prompt *i* samples from its own generator, seeded ``seed + i``: its samples do not
        depend on the other prompts of the call (`generate_seeded`). All ``n`` samples of a prompt draw
        from that one generator, so prompts spaced by 1 share no sample's stream; vllm and openai space
        prompts by ``n`` instead, as they seed each sample (*j* with seed + j). The same seed therefore
        samples differently on each engine, as their kernels would anyway."""
        seeds = [None if params.seed is None else params.seed + i for i in range(len(prompts))]
        return self.generate_seeded(prompts, params, seeds)

    @torch.inference_mode()
    def generate_seeded(
        self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int | None]
    ) -> list[list[Completion]]:
        """One batched generation in which row *i* draws its samples from ``torch.Generator(seed_i)``
        (`hf_decode`): a prompt's samples equal those of ``generate([prompt], seed=seed_i)``
        whatever else is in the batch (up to float rounding between batch shapes). A row without a
        seed draws one from torch's global generator."""
        return self.generate_mixed(prompts, [params.model_copy(update={"seed": s}) for s in seeds])

    @torch.inference_mode()
    def generate_mixed(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Completion]]:
        """Prompt *i* decoded by its own ``params[i]`` (n, greedy or sampled with its seed, limit, stop
        strings), all in one decode loop of at most ``batch_size`` rows (`HFStream`: a prompt joins as
        others leave): its samples are those of ``generate_seeded([prompts[i]], params[i],
        [params[i].seed])`` (up to float rounding between batch shapes). A sampled prompt without a seed
        draws one from torch's global generator."""
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        stream = self.open_stream()
        stream.add(prompts, params, range(len(prompts)))
        results: list[list[Completion]] = [[] for _ in prompts]
        for tag, completions, _ in progress(stream.drain(), total=len(prompts), description="generating"):
            results[tag] = completions
        return results

    def open_stream(self) -> HFStream:
        """A decode loop that prompts may join at any step (continuous batching: `HFStream`)."""
        return HFStream(self)

    def check_room(self, prompt_tokens: int, new_tokens: int) -> None:
        """Raise if a prompt of ``prompt_tokens`` plus ``new_tokens`` would pass the model's length limit."""
        if self.max_length is not None and prompt_tokens + new_tokens > self.max_length:
            raise PromptTooLongError(
                f"{self.name}: prompt of {prompt_tokens} tokens + {new_tokens} new tokens "
                f"is over the model's limit of {self.max_length}"
            )

    def _share_prefixes(self, encoded: Sequence[list[int]]) -> None:
        """Run once, and store, each prefix that several prompts of a call share beyond what the store
        holds for them, so that `_prefill` copies it instead of running it for every row.

        Problems that start together (a batch's first wave, or several joining in one round) bring
        prompts that begin with the same few-shot text: one at a time, each reuses its predecessor's
        stored prompt, but side by side none is stored yet and the batch would run that text once per
        row. A row's shared prefix is its longest common prefix with any other prompt of the call (its
        neighbours in sorted order), at most all but its last token (what `_prefill` runs); each distinct
        one that saves more than `SECOND_PASS_COST` row-columns runs as a batch of one (shortest first,
        so a longer one extends a shorter one's entry) and goes into the store.
        """
        if self.prefix_cache.capacity <= 0 or len(encoded) < 2:
            return
        order = sorted(range(len(encoded)), key=lambda i: encoded[i])
        shared = [0] * len(encoded)
        for a, b in zip(order, order[1:]):
            n = min(common_prefix_length(encoded[a], encoded[b]), len(encoded[a]) - 1, len(encoded[b]) - 1)
            shared[a], shared[b] = max(shared[a], n), max(shared[b], n)
        prefixes = sorted({tuple(ids[:n]) for ids, n in zip(encoded, shared) if n > 0}, key=len)
        for prefix in prefixes:
            rows = sum(1 for ids in encoded if tuple(ids[: len(prefix)]) == prefix)
            used, _ = self.prefix_cache.peek(prefix, len(prefix))
            if (rows - 1) * (len(prefix) - used) <= SECOND_PASS_COST:
                continue
            used, past = self.prefix_cache.lookup(prefix, len(prefix))
            out = self.model(
                input_ids=torch.tensor([prefix[used:]], device=self.device),
                position_ids=torch.arange(used, len(prefix), device=self.device)[None],
                use_cache=True, logits_to_keep=1, **({self.cache_arg: past} if past is not None else {}),
            )
            self.generation_forwarded += len(prefix) - used
            self.prefix_cache.store(prefix, output_cache(out))

    def _prefill(self, encoded: Sequence[list[int]], input_ids, attention, end: int) -> Any:
        """A cache holding columns ``[0, end)`` of the left-padded batch for every row, or None if ``end`` is 0.

        Row *i* sits in columns ``[width - len_i, width)``; its stored prefix (`PrefixCache.peek`) covers
        the first of them, and only the rest, ``need_i`` columns before ``end``, must run. One forward
        pass over the columns the neediest row lacks would make every row recompute that many (a problem
        that just joined the batch has little stored, every other trajectory all but one step). So the
        rows are split in two by need: the neediest ``k`` rows run alone over the columns only they lack,
        then every row runs the columns that the others lack too; ``k`` minimizes the row-columns run
        (counting a second pass as `SECOND_PASS_COST` row-columns). Stored KV is copied, never written to.
        """
        if end <= 0:
            return None
        width = input_ids.shape[1]
        found = [self.prefix_cache.peek(ids, min(len(ids), end - (width - len(ids)))) for ids in encoded]
        if all(stored is None for _, stored in found):
            return output_cache(self._forward_columns(input_ids, attention, 0, end, None))
        template = next(stored for _, stored in found if stored is not None)
        need = [end - (width - len(ids)) - used for ids, (used, _) in zip(encoded, found)]
        order = sorted(range(len(encoded)), key=lambda i: -need[i])
        sorted_need = [need[i] for i in order] + [0]
        rows = len(encoded)

        def cost(k: int) -> int:
            return k * (sorted_need[0] - sorted_need[k]) + rows * sorted_need[k] + (SECOND_PASS_COST if k else 0)

        k = min(range(rows + 1), key=cost)
        first, rest = sorted(order[:k]), sorted(order[k:])
        split = end - sorted_need[k]  # columns before this: the rest have them stored
        fresh_start = end - sorted_need[0]
        layers = None
        if first and split > fresh_start:
            sub = self._stored_layers(
                [encoded[i] for i in first], [found[i] for i in first], template, width, fresh_start
            )
            sub = DynamicCache(ddp_cache_data=sub) if sub else None
            out = self._forward_columns(input_ids[first], attention[first], fresh_start, split, sub)
            if not rest:
                return output_cache(out)
            layers = self._stored_layers(encoded, found, template, width, split, skip=set(first))
            index = torch.tensor(first, device=input_ids.device)
            for (keys, values), (k_new, v_new) in zip(layers, cache_layers(output_cache(out))):
                keys.index_copy_(0, index, k_new)
                values.index_copy_(0, index, v_new)
        else:
            split = fresh_start
            layers = self._stored_layers(encoded, found, template, width, split)
        past = DynamicCache(ddp_cache_data=layers) if layers else None
        if split < end:
            past = output_cache(self._forward_columns(input_ids, attention, split, end, past))
        return past

    def _stored_layers(self, encoded, found, template, width: int, upto: int, skip=frozenset()) -> list | None:
        """Per-layer (keys, values) of shape (rows, heads, upto, dim): each row's stored prefix in its
        columns before ``upto`` (zeros where padding is, and for the rows in ``skip``); ``template``: any
        stored entry, for the shapes."""
        if upto <= 0:
            return None
        layers = [
            (k.new_zeros((len(encoded), k.shape[1], upto, k.shape[3])), v.new_zeros((len(encoded), v.shape[1], upto, v.shape[3])))
            for k, v in template
        ]
        for i, (ids, (_, stored)) in enumerate(zip(encoded, found)):
            begin = width - len(ids)
            use = upto - begin
            if i in skip or use <= 0:
                continue
            for (keys, values), (k, v) in zip(layers, stored):
                keys[i, :, begin:upto] = k[0, :, :use]
                values[i, :, begin:upto] = v[0, :, :use]
            self.prefix_cache.reused_tokens += use
        return layers

    def _forward_columns(self, input_ids, attention, start: int, stop: int, past) -> Any:
        """Run columns ``[start, stop)`` of a left-padded batch on a cache holding the columns before."""
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=input_ids[:, start:stop], attention_mask=attention[:, :stop],
            position_ids=positions[:, start:stop], use_cache=True, logits_to_keep=1,
            **({self.cache_arg: past} if past is not None else {}),
        )
        self.generation_forwarded += input_ids.shape[0] * (stop - start)
        return out

    def join(self, session: DecodeSession, encoded: Sequence[list[int]], params: Sequence[SamplingParams], tags: Sequence[Any]) -> None:
        """Prefill ``encoded`` (each row reusing the prefix it stored before: its trajectory's previous
        prompt; shared prefixes run once) and add them to ``session``, each with its own decoding;
        sampled params must carry their seed."""
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, ids in enumerate(encoded):  # left padding: every prompt ends where generation starts
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            attention[i, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        samples = [p.n for p in params]
        self.prefix_cache.reserve(session.rows + sum(samples))
        # Every column but the last runs here; with n samples the prompts run once and their KV is copied.
        self._share_prefixes(encoded)
        past = self._prefill(encoded, input_ids, attention, width - 1)
        if any(n > 1 for n in samples):
            index = torch.repeat_interleave(torch.arange(len(encoded), device=self.device), torch.tensor(samples, device=self.device))
            if past is not None:
                past.batch_select_indices(index)
            input_ids, attention = input_ids[index], attention[index]
        groups = [
            RowGroup(
                n=p.n,
                max_new_tokens=p.max_new_tokens,
                generator=None if p.greedy else torch.Generator(device=self.device).manual_seed(int(p.seed)),
                temperature=p.temperature,
                top_p=p.top_p,
                stop=self._stop_criteria(p.stop),
                confirm_stop=self._ends_by_stop(p) if p.stop else None,
            )
            for p in params
        ]

        def store_prompts(cache, first_rows: list[int], cache_width: int) -> None:
            for ids, row in zip(encoded, first_rows):
                self.prefix_cache.store(ids, cache, row=row, start=cache_width - len(ids))

        session.join(input_ids, attention, past, groups, tags, on_prompt_cache=store_prompts)
        self.generation_forwarded += input_ids.shape[0]  # the last prompt column, once per sample

    def _stop_criteria(self, stop: Sequence[str]):
        """transformers' stop-string check for these strings, kept for the `STOP_CHECKS` sets last used
        (building one scans the vocabulary; keeping every set a server was sent would grow without end)."""
        if not stop:
            return None
        key = tuple(stop)
        if key in self._stop_checks:
            self._stop_checks.move_to_end(key)
        else:  # one callable per set: the decode loop checks its rows together
            criteria = StopStringCriteria(self.tokenizer, list(stop))
            self._stop_checks[key] = lambda sequences: criteria(sequences, None)
            while len(self._stop_checks) > STOP_CHECKS:
                self._stop_checks.popitem(last=False)
        return self._stop_checks[key]

    def _ends_by_stop(self, params: SamplingParams):
        """Whether a row with these generated tokens is finished (its `completion` says "stop"): what the
        decode loop asks of a row that `_stop_criteria` flagged. That check sees the prompt's tokens too,
        so it also flags a stop string that begins in the prompt (a prompt ending in a newline, a blank
        line as stop string, a first newline generated); stop strings count only in the generated text,
        as on vLLM and llamacpp."""
        return lambda tokens: self.completion(tokens, [], params).finish_reason == "stop"

    def completion(self, tokens: list[int], logprobs: list[float], params: SamplingParams) -> Completion:
        finish = "length"
        for i, tok in enumerate(tokens):  # the pad token may be an ordinary one: only EOS ends a row
            if tok in self.eos_ids:
                tokens, logprobs, finish = tokens[:i], logprobs[:i], "stop"
                break
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Completion(text=text, token_ids=tokens, logprobs=logprobs, finish_reason=finish)
