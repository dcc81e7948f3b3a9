"""The CPU demo's domain: multi-step arithmetic whose worked solutions come in tiers of detail.

A problem: a 2-digit start number and 2 to 5 one-digit additions or subtractions, the running total kept in
0-99 (the demo trials' setting, ../shared/notes/demo-trials.md: harder variants taught a tiny model nothing).

    Compute 43 + 9 - 6 + 9 .        (or "What is ... ?", "Find the value of ... .", "Work out the result of ... .")

A worked solution is a list of lines, one idea per line, in three kinds the compressor can tell apart:
restatements ("So far we have 43 ."), steps ("43 + 9 = 52 ."), checks ("Check : 52 - 9 = 43 ."). Its tiers of detail,
most verbose first, drop whole kinds together (per-step tiers did not train in the trials):

    full          every restatement, step and check
    no_checks     restatements and steps
    steps         steps only
    merged        steps taken two at a time ("43 + 9 - 6 = 46 .")
    answer        the result alone ("55 .")

Text is written with spaces around every symbol and number, so the demo tokenizer (`tokenizer_json`) is a
word-level vocabulary in which every digit is its own token: budgets are exact token counts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

TIERS = ("full", "no_checks", "steps", "merged", "answer")
# Questions are phrased several ways, so where the operands sit varies from problem to problem. With one
# phrasing and the equal-length wordings below, the student often never learned to copy the operators into its
# steps (3 of 7 runs did); with these, 2 of 2 (bench/demo/copy_probe.py measures it).
PHRASINGS = ("Compute {expr} .", "What is {expr} ?", "Find the value of {expr} .", "Work out the result of {expr} .")
QUESTION = re.compile(r"((?:\d+ [+-] )+\d+) [.?]")
STEP = re.compile(r"^(\d+) ([+-]) (\d+) = (\d+) \.$")

# The wordings of one kind of line are the same number of tokens: the text varies, the length does not. When
# they differed (2 to 5 words), a greedy student always took one wording, and its length at generous budgets
# missed the reference's by that choice (10 tokens at budget 128), not by its budget control.
RESTATE = ("So far we have {total} .", "The total is now {total} .", "The running total is {total} .", "Now we are at {total} .")
CHECK = ("Check : {after} {inverse} {n} = {before} .", "Verify : {after} {inverse} {n} gives {before} .")
OPENING = ("Let me work through this step by step .", "I will take one number at a time .", "Start from the first number and go on .")
CLOSING = ("So the answer is {answer} .", "The final total is {answer} .", "That leaves us with {answer} .")


@dataclass(frozen=True)
class Problem:
    start: int
    ops: tuple[tuple[str, int], ...]  # ("+", 9), ("-", 6), ...

    @property
    def expression(self) -> str:
        return " ".join([str(self.start)] + [f"{op} {n}" for op, n in self.ops])

    @property
    def answer(self) -> int:
        total = self.start
        for op, n in self.ops:
            total = total + n if op == "+" else total - n
        return total


def make_problem(rng: random.Random, min_ops: int = 2, max_ops: int = 5) -> Problem:
    start = rng.randint(10, 99)
    total, ops = start, []
    for _ in range(rng.randint(min_ops, max_ops)):
        n = rng.randint(1, 9)
        op = rng.choice("+-")
        if not 0 <= (total + n if op == "+" else total - n) <= 99:
            op = "-" if op == "+" else "+"
        total = total + n if op == "+" else total - n
        ops.append((op, n))
    return Problem(start, tuple(ops))


def problems(size: int, seed: int) -> list[dict]:
    """`size` problems as `problems` records (question, answer), seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(size):
        p = make_problem(rng)
        question = rng.choice(PHRASINGS).format(expr=p.expression)
        out.append({"uid": f"arith-{seed}-{i}", "question": question, "answer": str(p.answer)})
    return out


def parse_question(text: str) -> Problem:
    found = QUESTION.search(text)
    if found is None:
        raise ValueError(f"not an arithmetic problem: {text[:80]!r}")
    words = found.group(1).split()
    return Problem(int(words[0]), tuple((words[i], int(words[i + 1])) for i in range(1, len(words), 2)))


def worked_lines(problem: Problem, rng: random.Random, slip_rate: float = 0.0) -> list[str]:
    """The verbose, self-checking solution, one line per idea, wording varied by `rng`. With probability
    `slip_rate` one step is miscalculated (by 1 to 3) and the error carries on to the answer."""
    slip_at = rng.randrange(len(problem.ops)) if rng.random() < slip_rate else -1
    lines = [rng.choice(OPENING)]
    total = problem.start
    for i, (op, n) in enumerate(problem.ops):
        lines.append(rng.choice(RESTATE).format(total=total))
        after = total + n if op == "+" else total - n
        if i == slip_at:
            after += rng.choice([-3, -2, -1, 1, 2, 3])
        lines.append(f"{total} {op} {n} = {after} .")
        lines.append(rng.choice(CHECK).format(after=after, inverse="-" if op == "+" else "+", n=n, before=total))
        total = after
    lines.append(rng.choice(CLOSING).format(answer=total))
    return lines


def kind(line: str) -> str:
    """step, check or restatement (openings and closings count as restatements)."""
    if STEP.match(line):
        return "step"
    if line.startswith(("Check", "Verify")):
        return "check"
    return "restatement"


def tier(lines: list[str], name: str) -> list[str]:
    """The lines of a solution at one tier of detail (see the module docstring)."""
    if name == "full":
        return list(lines)
    if name == "no_checks":
        return [x for x in lines if kind(x) != "check"]
    steps = [x for x in lines if kind(x) == "step"]
    if name == "steps":
        return steps
    if name == "merged":
        merged = []
        for i in range(0, len(steps), 2):
            first = STEP.match(steps[i]).groups()
            if i + 1 == len(steps):
                merged.append(steps[i])
                continue
            second = STEP.match(steps[i + 1]).groups()
            merged.append(f"{first[0]} {first[1]} {first[2]} {second[1]} {second[2]} = {second[3]} .")
        return merged
    if name == "answer":  # the result alone (an empty thinking is not a well-formed rewrite)
        return [f"{STEP.match(steps[-1]).group(4)} ."] if steps else []
    raise ValueError(f"unknown tier {name!r}; tiers: {', '.join(TIERS)}")


def completion(lines: list[str], answer: int | str) -> str:
    """A whole completion: the thinking, then the boxed answer."""
    thinking = "\n".join(lines)
    return f"<think>\n{thinking}\n</think>\n\n\\boxed{{ {answer} }}" if lines else f"<think>\n</think>\n\n\\boxed{{ {answer} }}"


def final_answer(lines: list[str]) -> int | None:
    """The total the lines end with (the last step's result), or None without steps."""
    steps = [STEP.match(x) for x in lines if kind(x) == "step"]
    return int(steps[-1].group(4)) if steps else None


# ---------------------------------------------------------------- the demo tokenizer

SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
PIECES = re.compile(r"<\|im_start\|>|<\|im_end\|>|</?think>|\\boxed\{|\d| ?[A-Za-z]+| ?[^\sA-Za-z\d]|\n| ")


def vocabulary(extra_text: str = "") -> list[str]:
    """Every piece the demo's prompts and solutions can contain: words with their leading space, each
    digit, symbols, newlines. `extra_text`: more text to cover (the budget and compression templates)."""
    words = " ".join(RESTATE + CHECK + OPENING + CLOSING + PHRASINGS) + " system user assistant Q A"
    # extra_text also after a newline: the budget text follows the question on a line of its own
    pieces = set(PIECES.findall(words + " " + words.replace(" ", "\n") + " " + extra_text + "\n" + extra_text))
    pieces |= set("0123456789") | {" +", " -", " =", " .", " :", " ?", " }", "\n", " ", "\\boxed{", "+", "-", "=", "."}
    return SPECIAL + sorted(pieces - set(SPECIAL))


DEMO_TOKENIZER = "configs/demo-tokenizer.json"  # committed; `write_demo_tokenizer` remakes it


def write_demo_tokenizer(path: str = DEMO_TOKENIZER) -> None:
    """The demo's tokenizer, covering the default budget text. A test checks the committed file is this."""
    from bard_core.config import BudgetConfig

    with open(path, "w") as f:
        f.write(tokenizer_json(BudgetConfig().template))


def tokenizer_json(extra_text: str = "") -> str:
    """A word-level tokenizer (tokenizers' JSON) over `vocabulary`: pieces split by `PIECES`, decoded by
    plain concatenation, so text survives a round trip exactly and every digit is one token."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {piece: i for i, piece in enumerate(vocabulary(extra_text))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES.pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL[:4])
    return tok.to_str()
