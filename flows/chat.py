"""`bard chat`: talk to a trained model in the terminal, its thinking and answer streamed as they are written,
and the thinking tokens it spent shown against the budget."""

from __future__ import annotations

import sys
from typing import TextIO

from bard_core.errors import BardError
from bard_core.inference import BudgetedModel, Request, Result

DIM, RESET = "\033[2m", "\033[0m"


def answer(model: BudgetedModel, messages: list[dict[str, str]], template: Request, out: TextIO = sys.stdout) -> Result:
    """Generate one reply to `messages` (with `template`'s budget and settings), streaming it to `out`."""
    colour = out.isatty()
    state = {"kind": None}

    def on_delta(_index: int, kind: str, text: str) -> None:
        if kind != state["kind"]:
            if kind == "thinking":
                out.write(f"{DIM if colour else ''}<think>")
            elif state["kind"] == "thinking":
                out.write(f"</think>{RESET if colour else ''}")
            state["kind"] = kind
        out.write(text)
        out.flush()

    request = Request(messages=messages, budget=template.budget, mode=template.mode, answer_tokens=template.answer_tokens,
                      max_tokens=template.max_tokens, temperature=template.temperature, top_p=template.top_p,
                      seed=template.seed)  # fmt: skip
    result = model.generate([request], on_delta=on_delta)[0]
    if state["kind"] == "thinking":
        out.write(f"</think>{RESET if colour else ''}")
    budget = f"/{result.budget}" if result.budget is not None else ""
    notes = [f"thinking {result.thinking_tokens}{budget} tokens", f"answer {result.answer_tokens} tokens"]
    if result.capped:
        notes.append("capped")
    if result.finish_reason == "length":
        notes.append("cut at a token limit")
    out.write(f"\n[{', '.join(notes)}]\n")
    out.flush()
    return result


def interactive(model: BudgetedModel, template: Request) -> None:
    """Read questions until an empty line, `exit` or end of input; earlier answers (not their thinking) stay in
    the conversation, the budget text goes into the latest question only."""
    mode = template.mode if template.budget is not None else "unbudgeted"
    print(f"bard chat: {model.model_dir} (budget {template.budget}, {mode}). Empty line or Ctrl-D to quit.")
    messages: list[dict[str, str]] = []
    while True:
        try:
            question = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if question in ("", "exit", "quit"):
            return
        messages.append({"role": "user", "content": question})
        try:
            result = answer(model, messages, template)
        except BardError as err:  # e.g. the conversation outgrew the context: say so, keep the session
            print(f"error: {err}")
            messages.pop()
            continue
        messages.append({"role": "assistant", "content": result.answer})
