"""Budget-aware inference: use a model trained by bard as it was trained, with its thinking budget asked for,
enforced, or both.

Two budget modes, combinable (`Request.mode`):
- soft: the budget text in the user turn, exactly as in training (`bard_core.budget.add_budget`); the model
  decides when to stop thinking.
- hard: a logits processor (`BudgetCap`) forces the closing think tag once `budget` thinking tokens are spent,
  then lets the model answer in at most `answer_tokens` tokens (s1's "budget forcing", cap side only).
- soft+hard: both; what a user who needs a guarantee on a trained model wants.

Every completion starts inside the thinking: when the chat template does not end with the opening tag, the tag
is written for the model as its first token (bard's training completions all start with it). The thinking is
every token from there to the first closing tag, counted in the model's own tokens as generated; the answer is
what follows. In hard mode the thinking never exceeds the budget, the tags cannot reappear in the answer, and a
model that would stop while thinking closes its thinking instead.

Where the budget text comes from: a model directory `<artifact>/model` of an sft or grpo artifact has the
artifact's `config.json` beside it; its `budget` section (or that of the artifacts it was built from) gives
the template and the think tags. Any other directory needs the template given explicitly.

No Prefect, no Ray: this is the library that `bard chat` and the OpenAI-compatible server drive.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bard_core.budget import add_budget
from bard_core.config import BudgetConfig
from bard_core.errors import BardError
from bard_core.scoring.thinking import prompt_opens_thinking

Mode = Literal["soft", "hard", "soft+hard"]
MODES: tuple[str, ...] = ("soft", "hard", "soft+hard")


class InferenceError(BardError):
    """A request that cannot be served as given (the server answers it with HTTP 400)."""


@dataclass(frozen=True)
class Request:
    """One question (a string, or chat messages whose last user turn gets the budget text) and how to answer it."""

    messages: str | list[dict[str, str]]
    budget: int | None = None
    mode: Mode = "soft"
    answer_tokens: int = 64  # hard mode: tokens after the closing tag, at most
    max_tokens: int | None = None  # completion tokens at most; default: room for the budget and the answer
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int = 0


@dataclass
class Result:
    thinking: str  # the text between the tags (the tags themselves excluded)
    answer: str  # the text after the closing tag
    thinking_tokens: int  # the model's tokens between the tags, as generated
    answer_tokens: int
    completion_tokens: int  # every generated token: the tags, thinking, answer and the model's own EOS
    prompt_tokens: int
    capped: bool  # the hard cap forced the closing tag
    finish_reason: str  # "stop": the model ended; "length": a limit (max_tokens or answer_tokens) ended it
    budget: int | None = None
    mode: str = "soft"


# ---------------------------------------------------------------- where the budget text is read from


def find_budget_config(model_dir: str | Path) -> BudgetConfig | None:
    """The budget section a bard artifact's model was trained with, or None for a directory bard did not make.

    `model_dir` is `<home>/artifacts/<stage>/<key>/model`; `config.json` beside it records the stage config and
    its inputs. grpo records `budget`; sft does not, so the inputs (assemble, which wrote the prompts) are read.
    """
    artifact = Path(model_dir).resolve().parent
    artifacts_root = artifact.parent.parent
    queue, seen = [artifact], set()
    while queue:
        here = queue.pop(0)
        if here in seen:
            continue
        seen.add(here)
        try:
            record = json.loads((here / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            continue
        if isinstance(record["config"].get("budget"), dict):
            return BudgetConfig.model_validate(record["config"]["budget"])
        for stage, key in (record.get("inputs") or {}).items():
            queue.append(artifacts_root / stage / str(key))
    return None


def budget_config_for(model_dir: str | Path, template: str | None = None) -> BudgetConfig | None:
    """The artifact's budget section, its template replaced by `template` when one is given; None when neither
    is known (the model can still be used without a budget text: unbudgeted, or in hard mode)."""
    found = find_budget_config(model_dir)
    if template is None:
        return found
    if "{budget}" not in template:
        raise InferenceError(f"budget template {template!r}: must contain {{budget}}, e.g. 'Think for at most {{budget}} tokens.'")
    return (found or BudgetConfig()).model_copy(update={"template": template})


# ---------------------------------------------------------------- one generated sequence, token by token


THINK, ANSWER, TAG, END = "thinking", "answer", "tag", "end"


@dataclass
class _Tags:
    open_id: int
    close_id: int
    eos_ids: frozenset[int]
    eos_id: int  # the one forced when a limit ends a row: the model's first EOS


@dataclass
class _Limits:
    """What `BudgetCap` enforces on one row."""

    budget: int | None  # None: no cap on the thinking
    answer_tokens: int | None  # None: no limit on the answer (soft mode)
    max_tokens: int  # completion tokens at most, EOS excluded


@dataclass
class _Sequence:
    """Where one generated sequence is: waiting for the opening tag, thinking, answering, or ended; what it spent.

    Fed every generated token in order. The cap and the streamer each keep their own, fed the same tokens, so
    they agree on every count without sharing state across transformers' generate loop.
    """

    tags: _Tags
    limits: _Limits
    phase: str = "open"  # open -> thinking -> answer -> done
    thinking: int = 0
    answer: int = 0
    total: int = 0  # tokens generated, EOS excluded
    capped: bool = False
    cut: bool = False  # a limit (max_tokens, answer_tokens) forced the end

    def feed(self, token: int) -> str:
        """The kind of `token`: THINK, ANSWER, TAG (a think tag), END (EOS), or "" once ended (padding)."""
        if self.phase == "done":
            return ""
        if token in self.tags.eos_ids:
            self.cut = self.forced() is not None and self.forced() in self.tags.eos_ids
            self.phase = "done"
            return END
        self.total += 1
        if self.phase == "open":
            self.phase = "thinking"  # the opening tag, forced (see BudgetCap)
            return TAG
        if self.phase == "thinking":
            if token == self.tags.close_id:
                self.capped = self.limits.budget is not None and self.thinking >= self.limits.budget
                self.phase = "answer"
                return TAG
            self.thinking += 1
            return THINK
        self.answer += 1
        return ANSWER

    def forced(self) -> int | None:
        """The token the next step must be, if a rule forces one."""
        eos = self.tags.eos_id
        if self.phase == "done":
            return None
        if self.total >= self.limits.max_tokens:
            return eos
        if self.phase == "open":
            return self.tags.open_id
        if self.phase == "thinking" and self.limits.budget is not None and self.thinking >= self.limits.budget:
            return self.tags.close_id
        if self.phase == "answer" and self.limits.answer_tokens is not None and self.answer >= self.limits.answer_tokens:
            return eos
        return None


class BudgetCap:
    """A logits processor for transformers' `generate` (a LogitsProcessorList entry): per row, the opening tag first, the closing tag once the row's budget of
    thinking tokens is spent, EOS once its answer (hard mode) or its completion reaches its limit.

    While a capped row thinks, EOS's probability moves to the closing tag (it closes instead of stopping), and
    once it answers the tags are masked (a second thinking block would escape the count). Place it before the
    sampler: the sampler draws from what is left.
    """

    def __init__(self, rows: list[_Sequence], prompt_width: int):
        self.rows = rows
        self.width = prompt_width
        self.fed = 0

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids.shape[1] - self.width
        for step in range(self.fed, generated):  # the tokens chosen since the last call (one, in generate's loop)
            for seq, token in zip(self.rows, input_ids[:, self.width + step].tolist(), strict=True):
                seq.feed(token)
        self.fed = generated
        for row, seq in enumerate(self.rows):
            token = seq.forced()
            if token is not None:
                scores[row, :] = float("-inf")
                scores[row, token] = 0.0
            elif seq.limits.budget is not None and seq.phase == "thinking":
                close, eos = seq.tags.close_id, list(seq.tags.eos_ids)
                scores[row, close] = torch.logaddexp(scores[row, close], scores[row, eos].logsumexp(0))
                scores[row, eos] = float("-inf")
            elif seq.limits.budget is not None and seq.phase == "answer":
                scores[row, [seq.tags.open_id, seq.tags.close_id]] = float("-inf")
        return scores


class _Streamer:
    """A transformers streamer for a whole batch: splits each row's tokens into thinking and answer and decodes
    them incrementally (a multi-byte character split over tokens is held back until complete). The texts the
    results carry are these deltas joined, so streaming and non-streaming answers are the same text."""

    def __init__(self, tokenizer, rows: list[_Sequence], on_delta: Callable[[int, str, str], None] | None):
        self.tokenizer, self.rows, self.on_delta = tokenizer, rows, on_delta
        self.prompt_seen = False
        n = len(rows)
        self.ids: list[dict[str, list[int]]] = [{THINK: [], ANSWER: []} for _ in range(n)]
        self.offsets: list[dict[str, tuple[int, int]]] = [{THINK: (0, 0), ANSWER: (0, 0)} for _ in range(n)]
        self.text: list[dict[str, str]] = [{THINK: "", ANSWER: ""} for _ in range(n)]

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate first puts the prompt ids
            self.prompt_seen = True
            return
        for row, token in enumerate(value.tolist()):
            kind = self.rows[row].feed(token)
            if kind in (THINK, ANSWER):
                self.ids[row][kind].append(token)
                self._emit(row, kind, final=False)
            elif kind == TAG and self.rows[row].phase == "answer":
                self._emit(row, THINK, final=True)
            elif kind == END:
                self._emit(row, THINK, final=True)
                self._emit(row, ANSWER, final=True)

    def end(self) -> None:
        for row in range(len(self.rows)):
            self._emit(row, THINK, final=True)
            self._emit(row, ANSWER, final=True)

    def _emit(self, row: int, kind: str, final: bool) -> None:
        # vLLM's incremental detokenisation: decode from a few tokens back, emit what is new once it is whole.
        ids = self.ids[row][kind]
        prefix, read = self.offsets[row][kind]
        if read >= len(ids):
            return
        decode = lambda part: self.tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
        before = decode(ids[prefix:read])
        now = decode(ids[prefix:])
        if len(now) > len(before) and (final or not now.endswith("\ufffd")):
            delta = now[len(before) :]
            self.offsets[row][kind] = (read, len(ids))
            self.text[row][kind] += delta
            if self.on_delta is not None:
                self.on_delta(row, kind, delta)
        elif final:
            self.offsets[row][kind] = (read, len(ids))


# ---------------------------------------------------------------- checking a request, writing its budget text


def check_request(request: Request) -> int | None:
    """The request's budget, checked with its mode and limits; one InferenceError saying what is wrong."""
    budget, mode = request.budget, request.mode
    if mode not in MODES:
        raise InferenceError(f"budget mode {mode!r}: expected one of {', '.join(MODES)}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise InferenceError(f"thinking budget {budget!r}: expected a whole number of tokens")
    if budget is not None and budget < 1:
        raise InferenceError(f"thinking budget {budget}: expected at least 1 token")
    if budget is None and mode != "soft":
        raise InferenceError(f"budget mode {mode}: needs a thinking budget")
    if request.answer_tokens < 1 or (request.max_tokens is not None and request.max_tokens < 1):
        raise InferenceError("answer_tokens and max_tokens: expected at least 1 token")
    return budget


def budgeted_messages(request: Request, cfg: BudgetConfig | None, model: str) -> list[dict[str, str]]:
    """The chat turns the model receives: in soft mode the budget text is added to the last user turn, exactly
    as the training data wrote it (`add_budget`); otherwise the turns as given."""
    messages = [{"role": "user", "content": request.messages}] if isinstance(request.messages, str) else list(request.messages)
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise InferenceError("messages: no user turn")
    if request.mode in ("soft", "soft+hard") and request.budget is not None:
        if cfg is None:
            raise InferenceError(
                f"{model}: no budget template known (not a model directory of a bard sft or grpo artifact): "
                "give the template explicitly (--budget-template 'Think for at most {budget} tokens.'), or use budget mode hard"
            )
        last = users[-1]
        messages[last] = {**messages[last], "content": add_budget(messages[last]["content"], request.budget, cfg)}
    return messages


def vllm_request(request: Request, model: str, cfg: BudgetConfig | None) -> dict:
    """The body of a POST /v1/chat/completions to a vLLM OpenAI server that behaves as bard's own server does:
    the budget text in the user turn (soft) and vLLM's `thinking_token_budget` (hard; vLLM's SamplingParams and
    ChatCompletionRequest field, honoured when the server runs with a reasoning parser and
    `--reasoning-config '{"reasoning_start_str": "<think>", "reasoning_end_str": "</think>"}'`).
    `max_tokens` covers the thinking and the answer, as vLLM counts both in it."""
    budget = check_request(request)
    hard = request.mode in ("hard", "soft+hard")
    body: dict = {
        "model": model,
        "messages": budgeted_messages(request, cfg, model),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
    }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    elif hard:
        body["max_tokens"] = budget + 2 + request.answer_tokens  # the tags, the budget, the answer
    elif budget is not None:
        body["max_tokens"] = 2 * budget + request.answer_tokens  # as bard's own server: room to overshoot
    if hard:
        body["thinking_token_budget"] = budget
    return body


# ---------------------------------------------------------------- the model


@dataclass
class Prepared:
    """A request checked and rendered: the ids the model sees and the limits it runs under."""

    request: Request
    messages: list[dict[str, str]]  # the turns as the chat template received them, the budget text included
    prompt_ids: list[int]
    limits: _Limits
    opened: bool


@dataclass
class BudgetedModel:
    """A model directory loaded for budget-aware generation (transformers, batched; CPU or one GPU)."""

    model_dir: str
    budget_cfg: BudgetConfig | None
    backend: object = field(repr=False)
    tags: _Tags = field(repr=False)
    context_length: int = 0
    batch_size: int = 8

    @classmethod
    def load(
        cls, model_dir: str | Path, template: str | None = None, device: str = "auto", dtype: str = "float32",
        batch_size: int = 8, num_threads: int = 1,
    ) -> "BudgetedModel":  # fmt: skip
        """Load `model_dir` (its budget text from the artifact beside it, or `template`)."""
        from bard_core.config.generation import HFBackendConfig
        from bard_core.generation.hf_backend import HFBackend

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise InferenceError(f"{model_dir}: not a model directory (no config.json)")
        budget_cfg = budget_config_for(path, template)
        backend = HFBackend(HFBackendConfig(backend="hf", model=str(path), device=device, dtype=dtype,
                                            batch_size=batch_size, num_threads=num_threads))  # fmt: skip
        return cls.from_backend(backend, budget_cfg)

    @classmethod
    def from_backend(cls, backend, budget_cfg: BudgetConfig | None) -> "BudgetedModel":
        """A model the hf generation backend has loaded (the eval stage's engine), read with `budget_cfg`."""
        path = Path(backend.config.model)
        tags_cfg = budget_cfg or BudgetConfig()
        ids = [_single_token(backend.tokenizer, tag, path) for tag in (tags_cfg.think_open, tags_cfg.think_close)]
        tags = _Tags(open_id=ids[0], close_id=ids[1], eos_ids=frozenset(backend.eos_ids), eos_id=backend.eos_ids[0])
        context = getattr(backend.model.config, "max_position_embeddings", None) or 1 << 30
        return cls(str(path), budget_cfg, backend, tags, int(context), backend.config.batch_size)

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    def prepare(self, request: Request) -> Prepared:
        """Check a request and render its prompt; one InferenceError saying what is wrong."""
        from bard_core.generation import GenerationRequest, SamplingParams

        budget = check_request(request)
        hard = request.mode in ("hard", "soft+hard")
        if budget is not None and budget >= self.context_length:
            raise InferenceError(f"thinking budget {budget}: more than the model's context length ({self.context_length} tokens)")
        messages = budgeted_messages(request, self.budget_cfg, self.model_dir)
        try:
            ids = self.backend.prompt_ids(GenerationRequest(uid="r", messages=messages, sampling=SamplingParams(max_tokens=1)))
        except Exception as err:  # a malformed turn the chat template cannot render  # noqa: BLE001
            raise InferenceError(f"messages: the chat template cannot render them: {err}") from None
        prompt_text = self.tokenizer.decode(ids[-8:], skip_special_tokens=False)
        opened = prompt_opens_thinking(prompt_text, self.budget_cfg or BudgetConfig())
        room = self.context_length - len(ids)  # completion tokens that fit, EOS included
        # The most a hard row writes (EOS aside): the opening tag, the budget, the closing tag, the answer.
        needed = (0 if opened else 1) + (budget or 0) + 1 + request.answer_tokens if hard else 0
        if request.max_tokens is not None:
            max_tokens = request.max_tokens
        elif hard:
            max_tokens = needed
        elif budget is not None:
            max_tokens = min(2 * budget + request.answer_tokens, room - 1)  # room to overshoot a soft budget
        else:
            max_tokens = room - 1
        if max_tokens < 1 or max_tokens + 1 > room:
            raise InferenceError(
                f"the request is over the model's context length ({self.context_length} tokens): {len(ids)} prompt "
                f"tokens + {max(max_tokens, 1) + 1} completion tokens (thinking, answer and EOS)"
            )
        limits = _Limits(budget=budget if hard else None, answer_tokens=request.answer_tokens if hard else None,
                         max_tokens=max_tokens)  # fmt: skip
        return Prepared(request, messages, ids, limits, opened)

    def generate(
        self, requests: Sequence[Request | Prepared], on_delta: Callable[[int, str, str], None] | None = None
    ) -> list[Result]:
        """Answer every request, `batch_size` rows per `generate` call, each row under its own budget.
        `on_delta(index, kind, text)` receives the thinking ("thinking") and the answer ("answer") as they come."""
        prepared = [r if isinstance(r, Prepared) else self.prepare(r) for r in requests]
        results: list[Result] = []
        for start in range(0, len(prepared), self.batch_size):
            batch = prepared[start : start + self.batch_size]
            shifted = None if on_delta is None else (lambda row, kind, text, s=start: on_delta(s + row, kind, text))
            results.extend(self._generate_batch(batch, shifted))
        return results

    def _generate_batch(self, batch: list[Prepared], on_delta) -> list[Result]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        from bard_core.config.generation import SamplingParams
        from bard_core.generation.hf_backend import _PerRowSampler

        backend = self.backend
        width = max(len(p.prompt_ids) for p in batch)
        input_ids = torch.tensor([[backend.pad_id] * (width - len(p.prompt_ids)) + p.prompt_ids for p in batch], device=backend.device)
        attention_mask = torch.tensor([[0] * (width - len(p.prompt_ids)) + [1] * len(p.prompt_ids) for p in batch], device=backend.device)

        def rows() -> list[_Sequence]:
            return [_Sequence(self.tags, p.limits, phase="thinking" if p.opened else "open") for p in batch]

        cap, streamer = BudgetCap(rows(), width), _Streamer(self.tokenizer, rows(), on_delta)
        params = [SamplingParams(temperature=p.request.temperature, top_p=p.request.top_p, max_tokens=1) for p in batch]
        sampler = _PerRowSampler(params, [p.request.seed for p in batch], backend.device)
        with torch.inference_mode():
            backend.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                # Every row ends with EOS by its own max_tokens + 1 (the cap forces it); greedy over the
                # sampler's one-hot scores is the token the sampler drew.
                generation_config=GenerationConfig(
                    max_new_tokens=max(p.limits.max_tokens for p in batch) + 1, do_sample=False,
                    eos_token_id=backend.eos_ids, pad_token_id=backend.pad_id,
                ),  # fmt: skip
                logits_processor=LogitsProcessorList([cap, sampler]),
                streamer=streamer,
            )
        results = []
        for p, seq, text in zip(batch, streamer.rows, streamer.text, strict=True):
            results.append(
                Result(
                    thinking=text[THINK], answer=text[ANSWER], thinking_tokens=seq.thinking, answer_tokens=seq.answer,
                    completion_tokens=seq.total + (1 if seq.phase == "done" and not seq.cut else 0),
                    prompt_tokens=len(p.prompt_ids), capped=seq.capped,
                    finish_reason="length" if seq.cut or seq.phase != "done" else "stop",
                    budget=p.request.budget, mode=p.request.mode,
                )
            )  # fmt: skip
        return results


def _single_token(tokenizer, tag: str, model_dir: Path) -> int:
    ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InferenceError(f"{model_dir}: the think tag {tag!r} is {len(ids)} tokens in this model's tokenizer; "
                             "budget-aware inference needs each tag to be one token")  # fmt: skip
    return ids[0]

