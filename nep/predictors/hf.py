"""Predictors through transformers: `hf` (any causal LM) and `finetuned` (the finetune stage's
adapter). Greedy, `generate.batch_size` prompts of similar length at a time, left padding.

Device and dtype come from nep.util.device ("auto": cuda, else cpu; bf16 → fp16 on an older GPU →
fp32 on the CPU); on the CPU, torch's threads follow `generate.threads` (nep.util.device.configure_threads).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from nep.core.extract import Style
from nep.core.formats import PAPER, AnswerFormat, Versions
from nep.core.formats.base import AnswerGrammar
from nep.core.prompts import model_boundary, strip_lead
from nep.predictors.base import Prediction, Predictor, by_length, mean_logprob, token_budgets
from nep.predictors.prompts import chat_messages, training_prompt
from nep.predictors.stop import (
    EOS,
    GROWTH,
    LENGTH,
    REPEATED,
    RepeatedLinesStop,
    RowBudgetStop,
    replay_loop_stop,
)
from nep.train.gguf import resolve_model
from nep.train.model import check_trained_format, load_base_hf, load_finetuned
from nep.util.device import configure_threads, resolve_device, resolve_dtype
from nep.util.errors import NepError

log = logging.getLogger(__name__)

# transformers fills every generation option left unset from the model's generation_config.json
# (an instruct model's may hold do_sample, repetition_penalty...): set them all to plain argmax.
PURE_GREEDY: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "min_p": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "min_length": 0,
}


class TransformersGenerator:
    """Batched greedy generation with a transformers causal LM: left padding, an attention mask,
    stop at any EOS id (or at a loop), padding after EOS dropped. Prompts longer than the model's context are
    skipped (reason ``prompt_too_long``); `max_new_tokens` shrinks so a batch fits the context."""

    def __init__(self, model, tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        self.context = getattr(model.config, "max_position_embeddings", None)
        self._vocab: TokenTexts | None = None  # token texts for constrained decoding, built on first use

    @property
    def device(self):
        return next(self.model.parameters()).device

    def generate(
        self, prompts: list[str], *, max_new_tokens: int, add_special_tokens: bool = True, stop_repeats: int = 0,
        progress: Callable[[float], None] | None = None, budgets: list[int] | None = None, prompt_lookup: int = 0,
        grammars: list[AnswerGrammar | None] | None = None,
    ) -> list[Prediction]:
        """Greedy answers to `prompts`, each tagged with why it ended (nep.predictors.stop); with
        `stop_repeats` ≥ 2, a row stops once it loops (nep.predictors.stop.RepeatedLinesStop);
        `budgets`: per-prompt token limits below `max_new_tokens` (a row cut at its own is tagged
        `growth_limit`). `prompt_lookup` > 0: speculative decoding that drafts that many tokens from
        the prompt (transformers' prompt lookup, batch size 1 only: the prompts go one at a time);
        the model still checks every token, so the answers are greedy's. `grammars`: per prompt, the
        answers greedy decoding may write (GrammarProcessor), None for free decoding."""
        split = [model_boundary(p) for p in prompts]  # a training-format prompt: the marker's newline is the model's
        encoded = [self.tokenizer(head, add_special_tokens=add_special_tokens)["input_ids"] for head, _ in split]
        results: list[Prediction | None] = [None] * len(prompts)
        todo = []
        for i, ids in enumerate(encoded):
            if self.context is not None and len(ids) >= self.context:
                results[i] = Prediction("", skipped="prompt_too_long")
            else:
                todo.append(i)
        if todo:
            limits = {i: min(max_new_tokens, budgets[i]) if budgets else max_new_tokens for i in todo}
            if progress is not None:
                progress(len(prompts) - len(todo))  # skipped prompts are done
            batches = [[i] for i in todo] if prompt_lookup > 0 else [todo]
            for rows in batches:
                answers = self._generate_batch(
                    [prompts[i] for i in rows], [split[i][1] for i in rows], [encoded[i] for i in rows],
                    [limits[i] for i in rows], max_new_tokens=max_new_tokens, stop_repeats=stop_repeats,
                    progress=progress, prompt_lookup=prompt_lookup,
                    grammars=[grammars[i] for i in rows] if grammars else None,
                )
                for i, answer in zip(rows, answers, strict=True):
                    results[i] = answer
        return [r for r in results if r is not None]

    def _generate_batch(
        self, prompts: list[str], leads: list[str], encoded: list[list[int]], limits: list[int], *,
        max_new_tokens: int, stop_repeats: int, progress: Callable[[float], None] | None, prompt_lookup: int,
        grammars: list[AnswerGrammar | None] | None = None,
    ) -> list[Prediction]:
        """One `model.generate` call over these rows (see `generate`)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        longest = max(len(ids) for ids in encoded)
        budget = max(limits) if self.context is None else min(max(limits), self.context - longest)
        batch = self.tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt").to(self.device)
        speculative = {"prompt_lookup_num_tokens": prompt_lookup, "return_dict_in_generate": True,
                       "output_scores": True} if prompt_lookup > 0 else {}
        config = GenerationConfig(
            max_new_tokens=budget,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
            **PURE_GREEDY,
            **speculative,
        )
        width = batch["input_ids"].shape[1]
        guard = RepeatedLinesStop(self.tokenizer, prompts, width, stop_repeats, leads)
        criteria = [guard]
        if min(limits) < budget:
            criteria.append(RowBudgetStop(limits, width))
        if progress is not None:
            criteria.append(RowProgress(progress, self.eos_ids, width, budget))
        steps = StepScores()
        processors = [steps]
        if grammars and any(g is not None for g in grammars):
            if self._vocab is None:
                self._vocab = TokenTexts(self.tokenizer, self.eos_ids)
            processors.insert(0, GrammarProcessor(self.tokenizer, width, leads, grammars, self.eos_ids, self._vocab))
        # prompt lookup: its drafter runs the logits processors and stopping criteria before the model
        # does, so the first token's time is the end of the model's first forward pass (the prefill)
        prefill = FirstForward(self.model) if prompt_lookup > 0 else None
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                generated = self.model.generate(
                    **batch, generation_config=config, stopping_criteria=StoppingCriteriaList(criteria),
                    logits_processor=LogitsProcessorList(processors),
                )
        finally:
            if prefill is not None:
                prefill.remove()
        elapsed = time.perf_counter() - start
        first = prefill.first if prefill is not None else steps.first
        ttft = first - start if first is not None else None
        if prompt_lookup > 0:
            # a draft's rejected tokens also pass the logits processors: read the kept tokens' scores
            chosen = chosen_logprobs(generated.scores)
            generated = generated.sequences
        else:
            chosen = steps.chosen_logprobs()  # (steps, rows) or None
        new_tokens = generated[:, width:].tolist()
        results = []
        for row, tokens in enumerate(new_tokens):
            # a row stopped early is padded to the batch's length after its stop: drop that
            stopped = guard.stopped.get(row)
            if prompt_lookup > 0:  # several tokens per step: where the step-by-step guard stops
                stopped = replay_loop_stop(self.tokenizer, tokens[: limits[row]], prompts[row], leads[row], stop_repeats)
            tokens = tokens[: stopped if stopped is not None else limits[row]]
            kept = []
            for t in tokens:
                if t in self.eos_ids:
                    break
                kept.append(t)
            stop = (REPEATED if stopped is not None else EOS if len(kept) < len(tokens)
                    else GROWTH if limits[row] < max_new_tokens else LENGTH)
            text = strip_lead(self.tokenizer.decode(kept, skip_special_tokens=False), leads[row])
            made = len(kept) + (stop == EOS)  # the tokens the model chose for this answer, its EOS included
            logprob = mean_logprob(chosen[:made, row].tolist()) if chosen is not None else None
            results.append(Prediction(text, len(kept), latency_s=elapsed, ttft_s=ttft, batch=len(prompts),
                                      logprob=logprob, tags={"stop": stop}))
        return results


def chosen_logprobs(scores):
    """(steps, rows) log-probabilities of greedy's tokens from `generate`'s per-token `scores`, on the
    CPU; None when there are none."""
    import torch

    if not scores:
        return None
    return torch.stack([torch.log_softmax(s.float(), dim=-1).max(dim=-1).values for s in scores]).cpu()


class StepScores:
    """A logits processor that changes nothing: at each decoding step it notes the time (the first
    one ends the prefill: time to first token) and, per row, the log-probability of the token greedy
    decoding picks (the largest of the step's final scores, so it must run last). A step's scores
    stay on the device until `chosen_logprobs`."""

    def __init__(self):
        self.first: float | None = None
        self._steps: list = []

    def __call__(self, input_ids, scores):
        import torch

        if self.first is None:
            self.first = time.perf_counter()
        self._steps.append(torch.log_softmax(scores.float(), dim=-1).max(dim=-1).values)
        return scores

    def chosen_logprobs(self):
        """(steps, rows) tensor on the CPU, None when no step ran (an engine that bypasses processors)."""
        import torch

        return torch.stack(self._steps).cpu() if self._steps else None


class GrammarProcessor:
    """A logits processor for constrained greedy decoding: per row, the tokens scored at or above the
    best one its grammar allows (nep.core.formats.base.AnswerGrammar: the answer so far plus the
    token's text must be an allowed prefix; an EOS id must be allowed to end) are set to -inf, but
    that one, so greedy picks the model's most likely allowed token (of equal scores, the lowest id,
    as argmax does); the other scores stay (the log-probability noted is the one renormalized over
    what is left). It reads the rows from `input_ids` alone, so it also
    checks a prompt-lookup draft's tokens. A row that ended is left alone."""

    def __init__(self, tokenizer, width: int, leads: list[str], grammars: list[AnswerGrammar | None], eos_ids: list[int],
                 vocab: TokenTexts | None = None):
        self.tokenizer, self.width, self.leads, self.grammars = tokenizer, width, leads, grammars
        self.eos_ids = set(eos_ids)
        self.vocab = vocab or TokenTexts(tokenizer, eos_ids)

    def _text(self, token: int) -> str:
        return self.vocab.text(token)

    def _allowed(self, grammar: AnswerGrammar, tokens: list[int], full: str, lead: str, token: int) -> bool:
        """Whether `token` may follow the row's `tokens` (decoded: `full`, the lead included)."""
        if token in self.eos_ids:
            return grammar.may_end(answer_of(full, lead))
        if token >= self.vocab.size:  # an id past the tokenizer's (a padded embedding matrix)
            return False
        text = self._text(token)
        if "\ufffd" in text or full.endswith("\ufffd"):  # a character's bytes in two tokens: decode the row
            candidate = self.tokenizer.decode([*tokens, token], skip_special_tokens=False)
        else:
            candidate = full + text
        return grammar.allows(answer_of(candidate, lead))

    def _heads_allowed(self, grammar: AnswerGrammar, full: str, lead: str, size: int):
        """A bool tensor over the vocabulary: false for tokens whose first two characters the grammar
        refuses (a refused prefix stays refused, so they are all refused; the rest are checked one
        by one). Tokens of two characters or fewer, with U+FFFD, or EOS are left true."""
        import torch

        heads, head_of = self.vocab.heads(size)
        if full.endswith("\ufffd"):
            return torch.ones(len(head_of), dtype=torch.bool)
        allowed = torch.tensor([grammar.allows(answer_of(full + head, lead)) for head in heads] + [False, True])
        return allowed[head_of]  # index -1: the last entry (true), -2: ids the tokenizer lacks (false)

    def __call__(self, input_ids, scores):
        import torch

        for row, grammar in enumerate(self.grammars):
            if grammar is None:
                continue
            tokens = input_ids[row, self.width :].tolist()
            if self.eos_ids.intersection(tokens):
                continue
            full = self.tokenizer.decode(tokens, skip_special_tokens=False)
            lead = self.leads[row]
            if not grammar.allows(answer_of(full, lead)):
                continue  # a prompt-lookup draft gone astray: its refused token is where the model's check stops it
            if self._allowed(grammar, tokens, full, lead, int(scores[row].argmax())):
                continue  # greedy's own token is allowed: nothing to change
            order = torch.topk(scores[row], min(64, scores.shape[-1])).indices.tolist()
            rank = next((i for i, t in enumerate(order) if self._allowed(grammar, tokens, full, lead, t)), None)
            if rank is None:  # the model's 64 best are all refused: the rest, less those whose start is refused
                rest = scores[row].clone()
                rest[order] = float("-inf")
                rest[~self._heads_allowed(grammar, full, lead, len(rest)).to(rest.device)] = float("-inf")
                order = torch.argsort(rest, descending=True)[: int(torch.isfinite(rest).sum())].tolist()
                rank = next((i for i, t in enumerate(order) if self._allowed(grammar, tokens, full, lead, t)), None)
            if rank is None:  # nothing allowed (not possible with single-character tokens): left free
                continue
            # argmax takes the lowest id among equal scores (frequent with bf16 logits): so does this
            best = scores[row, order[rank]]
            tied = (scores[row] == best).nonzero().flatten().tolist()
            chosen = next(t for t in [*sorted(tied), order[rank]]
                          if t == order[rank] or self._allowed(grammar, tokens, full, lead, t))
            refused = scores[row] >= best
            refused[chosen] = False
            scores[row, refused] = float("-inf")
        return scores


class TokenTexts:
    """Each token's own text and the vocabulary grouped by first two characters, built once per
    tokenizer (a GrammarProcessor is made per batch)."""

    def __init__(self, tokenizer, eos_ids: list[int]):
        self.tokenizer, self.eos_ids = tokenizer, set(eos_ids)
        self.size = len(tokenizer)
        self._texts: dict[int, str] = {}
        self._heads: tuple[list[str], Any] | None = None

    def text(self, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self.tokenizer.decode([token], skip_special_tokens=False)
        return text

    def heads(self, size: int):
        """For `size` token ids (the model's logits): (the distinct first two characters of the tokens,
        a tensor: token id → index in them; -1 for the tokens always checked whole: EOS, two
        characters or fewer, U+FFFD; -2 for ids the tokenizer does not have)."""
        import torch

        if self._heads is None or len(self._heads[1]) != size:
            heads: dict[str, int] = {}
            head_of = []
            known = self.size
            for token in range(size):
                text = self.text(token) if token < known else ""
                if token >= known:
                    head_of.append(-2)
                elif token in self.eos_ids or len(text) <= 2 or "\ufffd" in text:
                    head_of.append(-1)
                else:
                    head_of.append(heads.setdefault(text[:2], len(heads)))
            self._heads = (list(heads), torch.tensor(head_of))
        return self._heads


def answer_of(generated: str, lead: str) -> str:
    """The answer in a row's generated text: "" while it is (a part of) the lead, else without the lead."""
    return "" if lead.startswith(generated) else strip_lead(generated, lead)


class RowProgress:
    """A stopping criterion that never stops: after each decoding step it reports, through
    `progress`, the batch's advance in examples (a row that reached EOS counts 1, an unfinished one
    its share of the token budget), so progress and ETA move within a batch."""

    def __init__(self, progress: Callable[[float], None], eos_ids: list[int], prompt_len: int, budget: int):
        self.progress, self.eos_ids, self.prompt_len, self.budget = progress, eos_ids, prompt_len, max(budget, 1)
        self.finished = None
        self.reported = 0.0

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        last = input_ids[:, -1]
        hit = torch.isin(last, torch.tensor(self.eos_ids, device=last.device))
        self.finished = hit if self.finished is None else self.finished | hit
        steps = input_ids.shape[1] - self.prompt_len
        done = int(self.finished.sum())
        now = done + (len(last) - done) * min(steps / self.budget, 1.0)
        if now > self.reported:
            self.progress(now - self.reported)
            self.reported = now
        return torch.zeros(len(last), dtype=torch.bool, device=last.device)


class FirstForward:
    """Notes when the model's first forward pass ends (a forward hook, removed by `remove`)."""

    def __init__(self, model):
        self.first: float | None = None
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if self.first is None:
            self.first = time.perf_counter()

    def remove(self) -> None:
        self._handle.remove()


def missing_model(param: str, model: str, error: Exception) -> NepError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return NepError(
        f"{param}: cannot load {model!r}: not a local model directory, and not found on (or not "
        f"reachable from) the Hugging Face hub ({first[:200]}); fix the id or path, or log in "
        "with `hf auth login` for a gated model"
    )


@dataclass
class HFPredictor(Predictor):
    """Any causal LM through transformers. `model`: hub id or local path. `chat`: true for an
    instruct model (chat template + nep's instruction for the answer format,
    nep.predictors.prompts.system_instruction; `system` replaces it), false for a base model
    (training prompt), null to decide by whether the tokenizer has a chat template. `template`: the training
    prompt's layout, nep's or the paper's (for the paper's released fine-tuned models). `stop_repeats`:
    stop an answer whose last lines are one block repeated this many times (a loop;
    nep.predictors.stop), 0 to let loops run to max_new_tokens."""

    kind: ClassVar[str] = "hf"
    required: ClassVar[tuple[str, ...]] = ("model",)
    # padded batches on CPU threads: batch_size and threads can change an answer (nep.predictors.runner)
    batch_dependent: ClassVar[bool] = True
    model: str = ""
    chat: bool | None = None
    template: Literal["nep", "paper"] = "nep"
    system: str | None = None  # None: nep's instruction for the answer format
    system_role: bool = True  # false: the instruction opens the user message (templates without one)
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    stop_repeats: int = 8
    constrain: bool = False  # decode only answers that can apply (the answer format's grammar; training prompts)

    @classmethod
    def check_options(cls, options):
        if options.get("constrain") and options.get("chat"):
            return "constrain", "needs the training prompt (`chat: false`): a chat reply wraps its answer in tags"
        repeats = options.get("stop_repeats", 0)
        if isinstance(repeats, int) and not isinstance(repeats, bool) and (repeats < 0 or repeats == 1):
            return "stop_repeats", f"must be 0 (no guard) or at least 2, got {repeats}"
        return super().check_options(options)

    def __post_init__(self):
        if not self.model:
            raise ValueError(f"kind {self.kind!r} needs `model` (a hub id or local path)")
        self._generator: TransformersGenerator | None = None
        self._device = ""  # resolved when the model loads
        self.threads = 0
        self.fmt: AnswerFormat = PAPER  # the run's answer format (settings.answer_format, set by predict)

    def resolved_device(self) -> str:

        device = self._device = resolve_device(self.device)
        if device == "cpu":
            configure_threads(self.threads)
        return device

    def load(self):

        device = self.resolved_device()
        model = resolve_model(self.model, self.param("model"))  # a .gguf file: its dequantized copy
        try:
            lm, tokenizer = load_base_hf(
                model, device=device, dtype=resolve_dtype(self.dtype, device),
                trust_remote_code=self.trust_remote_code,
            )
        except OSError as e:  # transformers: not a directory, unknown repo, hub unreachable
            raise missing_model(self.param("model"), self.model, e) from e
        return lm.to(device), tokenizer

    @property
    def generator(self) -> TransformersGenerator:
        if self._generator is None:
            self._generator = TransformersGenerator(*self.load())
            if self.chat is None:
                self.chat = bool(getattr(self._generator.tokenizer, "chat_template", None))
            log.info("%s: %s prompts", self.kind, "chat" if self.chat else "training")
        return self._generator

    @property
    def style(self) -> Style:  # type: ignore[override]
        _ = self.generator  # resolves chat=None
        return "chat" if self.chat else "completion"

    def render(self, example: dict[str, Any]) -> str:
        if not self.chat:
            return training_prompt(example, self.template, self.fmt)
        return self.generator.tokenizer.apply_chat_template(
            chat_messages(example, self.system, system_role=self.system_role, fmt=self.fmt), tokenize=False,
            add_generation_prompt=True,
        )

    def generate(self, examples: list[dict[str, Any]], max_new_tokens: int, growth: int = 0,
                 prompt_lookup: int = 0) -> list[Prediction]:
        """One batch, in order; `growth` > 0: each answer at most that many tokens longer than its
        current version (generate.max_growth_tokens); `prompt_lookup` > 0: drafted from the prompt
        (generate.prompt_lookup_tokens, TransformersGenerator.generate)."""
        gen = self.generator
        prompts = [self.render(ex) for ex in examples]
        budgets = None
        if growth > 0:
            budgets = token_budgets(examples, lambda text: len(gen.tokenizer(text, add_special_tokens=False)["input_ids"]),
                                    max_new_tokens, growth)
        grammars = None
        if self.constrain:
            if self.chat:
                raise NepError(f"{self.param('constrain')}: needs the training prompt (`chat: false`); "
                               "this model answers through its chat template")
            grammars = [self.fmt.grammar(Versions.of(ex)) for ex in examples]
        # A rendered chat template already holds its special tokens (BOS etc.).
        return gen.generate(
            prompts, max_new_tokens=max_new_tokens, add_special_tokens=not self.chat, stop_repeats=self.stop_repeats,
            progress=self.progress, budgets=budgets, **({"prompt_lookup": prompt_lookup} if prompt_lookup else {}),
            **({"grammars": grammars} if grammars else {}),
        )

    def predict(self, examples, todo, settings):
        self.threads, self.fmt = settings.threads, settings.answer_format
        if self.constrain and todo and self.fmt.grammar(Versions.of(examples[todo[0]])) is None:
            raise NepError(f"{self.param('constrain')}: the answer format {self.fmt.name!r} has no grammar to "
                           "constrain decoding with (blocks has one); remove the option or answer in blocks")
        for idx in by_length(examples, todo, settings.batch_size):
            predictions = self.generate([examples[i] for i in idx], settings.max_new_tokens, settings.max_growth_tokens,
                                        settings.prompt_lookup_tokens)
            yield list(zip(idx, predictions, strict=True))

    def runs_on(self, settings):
        from nep.util.machine import describe

        device = self._device or self.resolved_device()
        threads = None
        if device == "cpu":
            import torch

            threads = torch.get_num_threads()
        # prompt lookup answers one prompt per call (transformers' assisted decoding takes one row)
        batch = 1 if settings.prompt_lookup_tokens > 0 else settings.batch_size
        return {"device": device, "machine": describe(device, threads), "batch_size": batch}


@dataclass
class FinetunedPredictor(HFPredictor):
    """The finetune stage's adapter (`model`: its output directory) on its base model, loaded
    with nep.train.model.load_finetuned (merged into the base weights unless `merge_adapter` is
    false), given the training prompt."""

    kind: ClassVar[str] = "finetuned"
    required: ClassVar[tuple[str, ...]] = ()
    model: str = "models/finetune"
    chat: bool | None = False
    merge_adapter: bool = True  # generate with the adapter merged into the base weights (faster on the CPU)

    @classmethod
    def check_options(cls, options):
        if options.get("chat"):
            return "chat", "must be false: kind 'finetuned' uses the training prompt"
        return super().check_options(options)

    def __post_init__(self):
        super().__post_init__()
        if self.chat:
            raise ValueError("kind 'finetuned' uses the training prompt; `chat` must be false")

    def predict(self, examples, todo, settings):
        check_trained_format(self.model, settings.answer_format, self.param("model"))  # before loading
        yield from super().predict(examples, todo, settings)

    def load(self):

        if not Path(self.model).exists():
            raise NepError(f"{self.param('model')}: {self.model}: no fine-tuned model (run the finetune stage first)")
        device = self.resolved_device()
        dtype = resolve_dtype(self.dtype, device)
        try:
            return load_finetuned(self.model, device=device, dtype=dtype, merge=self.merge_adapter)
        except OSError as e:  # the base model named in its metadata is missing
            raise missing_model(self.param("model"), self.model, e) from e
