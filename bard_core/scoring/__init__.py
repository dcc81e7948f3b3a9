"""Scoring that must run anywhere, the OpenRLHF reward file included: the standard library only.

The modules import each other relatively and math-verify, sympy, tiktoken and tokenizers only inside
functions, so `reward_file.py` ships this package whole, its sources embedded, under another name.

- `thinking`: the thinking span of a completion, the budget written in a prompt
- `answers`: the final answer read from a completion
- `compare`: normalisation and the fast path (one tolerance, `far_apart`)
- `verify`: the gold, math-verify, `check_answer` and `grade`
- `tokens`: counting a budget's tokens with the student's tokenizer
- `reward`: R_bud, the combination, the reward of one completion, the RL label
- `openrlhf`: the reward as OpenRLHF calls it
"""


def within(length: int, budget: int, tau: float) -> bool:
    """The one rule for "within budget": L <= B * (1 + tau)."""
    return length <= budget * (1 + tau)
