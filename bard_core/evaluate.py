"""Stage `eval`: sample one model on benchmark problems at every budget of the sweep, grade and measure.

Pure functions, rows in and rows out; `tasks/eval.py` runs them on engine actors (one model per actor) and
commits each chunk of rows as it completes, like the teacher stage.

Three modes (`EvalModel.mode`):
- budget: the prompt carries the budget text, as in training; the model decides when to stop thinking.
- hard: the budget text, and the thinking capped at the budget (`bard_core.inference`, the hf engine's model):
  the closing tag forced once the budget is spent, then at most `answer_tokens` of answer.
- truncate: the baseline of a model trained without budgets. No budget text; the thinking is cut at the
  budget (generation stops after `budget` tokens), the closing tag is written if the model had not, and the
  answer is generated after it. A model that closed its thinking in time keeps its own answer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from bard_core.budget import Budget
from bard_core.config import BardConfig, EvalModel
from bard_core.generation import Completion, GenerationBackend, GenerationRequest, SamplingParams
from bard_core.prompts import chat
from bard_core.scoring.thinking import prompt_opens_thinking
from bard_core.scoring.verify import choice_letter, grade
from bard_core.teacher import derived_seed

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def max_tokens(budget: int, config: BardConfig) -> int:
    """Room to think up to `max_tokens_factor` x the budget (overshoot is measured, not prevented) and answer."""
    return math.ceil(config.eval.max_tokens_factor * budget) + config.eval.answer_tokens


def sampling(problem_uid: str, budget: int, limit: int, config: BardConfig) -> SamplingParams:
    cfg = config.eval
    seed = derived_seed(cfg.seed, f"{problem_uid}/{budget}")  # the same draws for every model: paired comparisons
    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=limit, n=cfg.samples, seed=seed)


def messages(question: str, budget: int, model: EvalModel, config: BardConfig) -> list[dict[str, str]]:
    return chat(Budget.from_config(config).add(question, budget if model.mode == "budget" else None))


def presented(problem: dict, config: BardConfig) -> tuple[str, list[str] | None, str]:
    """(question as shown, choices in the order shown, gold). Multiple-choice options (GPQA) are shuffled
    with a seed per problem and listed as lettered lines; a gold given as a letter of the original order
    becomes that option's text, so it is graded against the shuffled letters. No choices: none are made up."""
    choices = problem["choices"]
    if not choices:
        return problem["question"], None, problem["answer"]
    letter = choice_letter(problem["answer"], choices)
    gold = choices[LETTERS.index(letter)] if letter else problem["answer"]
    shown = random.Random(derived_seed(config.eval.seed, problem["uid"])).sample(list(choices), len(choices))
    options = "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(shown))
    return f"{problem['question']}\n\n{options}", shown, gold


def sample(problems: Sequence[dict], backend: GenerationBackend, config: BardConfig, model: EvalModel, model_dir: str) -> list[dict]:
    """Every sample of these problems at every budget, graded, as `eval_samples` rows."""
    budgets = config.eval.budgets
    problems = [dict(p, question=q, choices=c, answer=a) for p in problems for q, c, a in [presented(p, config)]]
    keys = [(p, b) for p in problems for b in budgets]
    if model.mode == "budget":
        requests = [
            GenerationRequest(uid=f"{p['uid']}/{b}", messages=messages(p["question"], b, model, config),
                              sampling=sampling(p["uid"], b, max_tokens(b, config), config))
            for p, b in keys
        ]  # fmt: skip
        texts = [(c, c.text, c.completion_tokens) for c in backend.generate(requests)]
    elif model.mode == "hard":
        texts = _capped(keys, backend, config)
    else:
        texts = _truncated(keys, backend, config, model, model_dir)
    rules = Budget.from_config(config)
    tokens = rules.count([t for _, t, _ in texts])
    rows = []
    for i, ((completion, text, generated), length) in enumerate(zip(texts, tokens, strict=True)):
        problem, budget = keys[i // config.eval.samples]
        graded = grade(text, problem["answer"], budget_cfg=config.budget, verify_cfg=config.verify, choices=problem["choices"])
        rows.append(
            {
                "uid": f"{model.name}/{problem['uid']}/b{budget}/s{completion.sample_idx}",
                "model": model.name,
                "mode": model.mode,
                "benchmark": problem["source"],
                "problem_uid": problem["uid"],
                "budget": budget,
                "sample_idx": completion.sample_idx,
                "completion": text,
                "answer_pred": graded.answer_pred,
                "thinking_tokens": length,
                "completion_tokens": generated,
                "correct": graded.correct,
                "within_budget": rules.within(length, budget),
                "finish_reason": completion.finish_reason,
                "seed": completion.seed,
            }
        )
    return rows


def _truncated(keys, backend: GenerationBackend, config: BardConfig, model: EvalModel, model_dir: str) -> list[tuple[Completion, str, int]]:
    """The truncation baseline: think for at most `budget` tokens, then answer after a closing tag.
    Returns (first completion, whole text, tokens generated) per sample."""
    from transformers import AutoTokenizer

    close = config.budget.think_close
    template = AutoTokenizer.from_pretrained(model_dir)
    thoughts = backend.generate(
        [
            GenerationRequest(uid=f"{p['uid']}/{b}", messages=messages(p["question"], b, model, config),
                              sampling=sampling(p["uid"], b, b, config))
            for p, b in keys
        ]
    )  # fmt: skip
    follow_ups, prefixes = [], []
    for i, thought in enumerate(thoughts):
        problem, budget = keys[i // config.eval.samples]
        if close in thought.text and thought.finish_reason != "length":
            prefixes.append(None)  # finished within the budget, answer included
            continue
        prefix = thought.text if close in thought.text else thought.text.rstrip() + f"\n{close}\n\n"
        prompt = template.apply_chat_template(messages(problem["question"], budget, model, config), tokenize=False,
                                              add_generation_prompt=True)  # fmt: skip
        params = SamplingParams(temperature=config.eval.temperature, top_p=config.eval.top_p,
                                max_tokens=config.eval.answer_tokens, n=1, seed=thought.seed)  # fmt: skip
        if prompt_opens_thinking(prompt, config.budget) and prefix.startswith(config.budget.think_open):
            prompt = prompt[: prompt.rfind(config.budget.think_open)]  # the backend wrote the prompt's opening back
        follow_ups.append(GenerationRequest(uid=f"{thought.uid}/{thought.sample_idx}", prompt=prompt + prefix, sampling=params))
        prefixes.append(prefix)
    answers = iter(backend.generate(follow_ups)) if follow_ups else iter(())
    out = []
    for thought, prefix in zip(thoughts, prefixes, strict=True):
        if prefix is None:
            out.append((thought, thought.text, thought.completion_tokens))
        else:
            answer = next(answers)
            out.append((thought, prefix + answer.text, thought.completion_tokens + answer.completion_tokens))
    return out


def _capped(keys, backend: GenerationBackend, config: BardConfig) -> list[tuple[Completion, str, int]]:
    """Hard mode: the budget text and `BudgetCap` on the hf engine's own model, each sample seeded as the
    hf backend seeds it (`sampling.seed + i`). Returns (completion, whole text, tokens generated) per sample."""
    from bard_core.errors import BardError
    from bard_core.generation.hf_backend import HFBackend
    from bard_core.inference import BudgetedModel, Request

    if not isinstance(backend, HFBackend):
        raise BardError(f"eval: mode hard needs the hf engine, not {type(backend).__name__}")
    capped = BudgetedModel.from_backend(backend, config.budget)
    requests = [
        Request(p["question"], budget=b, mode="soft+hard", answer_tokens=config.eval.answer_tokens,
                temperature=config.eval.temperature, top_p=config.eval.top_p, seed=sampling(p["uid"], b, 1, config).seed + i)
        for p, b in keys for i in range(config.eval.samples)
    ]  # fmt: skip
    cfg, out = config.budget, []
    for k, (request, result) in enumerate(zip(requests, capped.generate(requests), strict=True)):
        p, b = keys[k // config.eval.samples]
        text = f"{cfg.think_open}{result.thinking}{cfg.think_close}{result.answer}"
        completion = Completion(uid=f"{p['uid']}/{b}", sample_idx=k % config.eval.samples, text=text,
                                prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                                finish_reason=result.finish_reason, seed=request.seed, model=backend.config.model)  # fmt: skip
        out.append((completion, text, result.completion_tokens))
    return out
