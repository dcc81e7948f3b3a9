"""The traps of real chat checkpoints, each met with a real tokenizer and chat template (SmolLM2-135M-Instruct's from
its GGUF file, the Qwen3 vocabulary) and tiny random weights (tests/bard_core/conftest.py):

- a vocabulary without `<think>`: the student gets one added token per tag and embeddings to match, so SFT, GRPO's
  id count and eval's hard cap all see one token per tag;
- a template whose generation prompt opens the thinking: completions are written back whole, parsed, counted and
  rewarded with their thinking, and SFT never teaches a second `<think>`;
- EOS and pad of base and instruct checkpoints: SFT rows end with the template's end of turn, generation stops
  there, and pad == EOS keeps that last token in the loss.
"""

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from bard_core.budget import count_budget_tokens, count_budget_tokens_from_ids
from bard_core.config import BudgetConfig, EvalModel, StudentConfig, load_config
from bard_core.config.generation import HFBackendConfig, SamplingParams
from bard_core.errors import BardError
from bard_core.generation import GenerationRequest
from bard_core.generation.hf_backend import HFBackend
from bard_core.rewards import trl_reward_func
from bard_core.scoring.thinking import split_thinking
from bard_core.student import check_chat_template, end_of_turn, load_model, load_tokenizer, template_opens_thinking
from tests.bard_core.conftest import OPENS_THINKING, qwen3_tokenizer

CFG = BudgetConfig()
QUESTION = "What is 2 plus 3?"
ANSWER = "<think>\n2 plus 3 is 5, so the sum is 5\n</think>\n\nThe answer is \\boxed{5}."
ROW = {
    "prompt": [{"role": "user", "content": f"{QUESTION}\nThink for at most 12 tokens."}],
    "completion": [{"role": "assistant", "content": ANSWER}],
}


def trained_ids(tokenizer, row: dict) -> list[int]:
    """What TRL's SFTTrainer trains on for a conversational prompt-completion row: the rendered row's ids from where
    they part from the rendered generation prompt's."""
    prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)
    whole = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=True)
    prompt, whole = prompt["input_ids"], whole["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(prompt, whole)) if a != b), len(prompt))
    return whole[start:]


def logged_lengths(reward, prompts, completion_ids) -> list[int]:
    """GRPO's reward on these generated ids, as TRL calls it; the budget tokens it counted."""
    logged = {}
    reward(prompts=prompts, completions=[""] * len(prompts), completion_ids=completion_ids, answer=["5"] * len(prompts),
           budget=[12] * len(prompts), log_extra=lambda key, values: logged.setdefault(key, values))  # fmt: skip
    return logged["budget_tokens"]


# ---------------------------------------------------------------- a vocabulary without <think>


def test_a_vocabulary_without_think_tags_gets_one_token_per_tag(smollm2_dir):
    raw = AutoTokenizer.from_pretrained(smollm2_dir)
    assert [len(raw(t, add_special_tokens=False)["input_ids"]) for t in ("<think>", "</think>")] == [3, 3]

    student = StudentConfig(model=smollm2_dir)
    tokenizer = load_tokenizer(student, CFG)
    assert len(tokenizer) == len(raw) + 2
    open_id, close_id = (tokenizer.convert_tokens_to_ids(t) for t in ("<think>", "</think>"))
    model = load_model(student, tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) == model.get_output_embeddings().out_features

    # SFT trains on one token per tag; the text the hf backend and TRL decode keeps them.
    ids = trained_ids(tokenizer, ROW)
    assert ids[0] == open_id and ids.count(open_id) == ids.count(close_id) == 1
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text.rstrip() == ROW["completion"][0]["content"]  # the end of turn is special: skipped

    # One count everywhere: GRPO's reward from the generated ids (by the tag ids), eval's from the decoded text with
    # the student's tokenizer, the teacher's and compressor's with `budget.tokenizer` naming the model directory.
    config = load_config()
    [from_ids] = logged_lengths(trl_reward_func(config, tokenizer), [ROW["prompt"]], [ids])
    [from_text] = count_budget_tokens([text], tokenizer, CFG)
    [from_directory] = count_budget_tokens([text], smollm2_dir, CFG)
    assert from_ids == from_text == from_directory == len(raw("\n2 plus 3 is 5, so the sum is 5\n")["input_ids"])
    assert from_ids == count_budget_tokens_from_ids(ids, CFG, open_id, close_id, frozenset({tokenizer.eos_token_id}))


def test_a_student_given_think_tokens_takes_a_hard_budget(smollm2_dir, tmp_path):
    from bard_core.inference import BudgetedModel, Request

    student = StudentConfig(model=smollm2_dir)
    tokenizer = load_tokenizer(student, CFG)
    load_model(student, tokenizer).save_pretrained(tmp_path)  # what SFT saves, before any step
    tokenizer.save_pretrained(tmp_path)
    model = BudgetedModel.load(tmp_path, template="Think for at most {budget} tokens.")
    [result] = model.generate([Request(QUESTION, budget=5, mode="hard", answer_tokens=3, seed=1)])
    assert result.thinking_tokens == 5 and result.capped and result.answer_tokens <= 3


# ---------------------------------------------------------------- a template that opens the thinking


@pytest.fixture(scope="module")
def opens_backend(qwen3_opens_thinking_dir) -> HFBackend:
    return HFBackend(HFBackendConfig(backend="hf", model=qwen3_opens_thinking_dir))


def test_a_template_that_opens_the_thinking_gives_whole_completions(opens_backend):
    backend, tokenizer = opens_backend, opens_backend.tokenizer
    assert template_opens_thinking(tokenizer, CFG)
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=6, n=2, seed=3)
    request = GenerationRequest(uid="q", messages=[{"role": "user", "content": QUESTION}], sampling=sampling)
    out = backend.generate([request])
    for c in out:
        # The model wrote its thinking after the prompt's "<think>\n": the text starts with it, once.
        assert c.text.startswith("<think>\n") and c.text.count("<think>") == 1 and c.completion_tokens <= 6
        cut = split_thinking(c.text, CFG)  # the teacher rows' and eval's parse
        assert cut.truncated and cut.answer == "" and cut.thinking == c.text[len("<think>") :]
        # eval's and the teacher's length: the thinking, counted (it was 0, and "within budget", before)
        assert count_budget_tokens([c.text], "qwen3", CFG) == [len(tokenizer(cut.thinking)["input_ids"])]


def test_qwen3s_own_template_with_thinking_off_is_not_opened():
    import trl

    from bard_core.student import CHAT_TEMPLATE

    qwen3 = qwen3_tokenizer("<|im_end|>", CHAT_TEMPLATE)
    qwen3.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()  # the Hub's
    assert not template_opens_thinking(qwen3, CFG)
    # Thinking off: the generation prompt ends with an empty, closed block; the completion is all answer.
    assert not template_opens_thinking(qwen3, CFG, enable_thinking=False)


def test_the_reward_counts_a_thinking_the_template_opened(opens_backend):
    tokenizer = opens_backend.tokenizer
    thinking = tokenizer("2 plus 3 is 5, so", add_special_tokens=False)["input_ids"]
    closed = thinking + tokenizer("\n</think>\n\n\\boxed{5}<|im_end|>", add_special_tokens=False)["input_ids"]
    reward = trl_reward_func(load_config(), tokenizer)
    # TRL hands conversational prompts over as messages; the rollouts start inside the thinking.
    lengths = logged_lengths(reward, [ROW["prompt"]] * 2, [thinking, closed])
    assert lengths == [len(thinking), len(thinking) + 1]  # cut off: all of it; closed: up to the tag ("\n" too)


def test_sft_never_teaches_a_second_opening_tag():
    row_opened = qwen3_tokenizer("<|im_end|>", OPENS_THINKING)
    check_chat_template(row_opened, ROW, CFG, "r1-like")  # verbatim turns: the prompt's opening is the row's
    ids = trained_ids(row_opened, ROW)
    open_id, close_id = (row_opened.convert_tokens_to_ids(t) for t in ("<think>", "</think>"))
    assert open_id not in ids and ids.count(close_id) == 1  # SFT starts inside the thinking, as generation will

    # A template that opens the thinking and writes "<think>\n" before every assistant turn as well.
    doubling = OPENS_THINKING.replace("<|im_start|>assistant\n{{ message['content'] }}",
                                      "<|im_start|>assistant\n<think>\n{{ message['content'] }}")  # fmt: skip
    with pytest.raises(BardError, match="second <think>") as err:
        check_chat_template(qwen3_tokenizer("<|im_end|>", doubling), ROW, CFG, "models/doubling")
    assert "models/doubling" in str(err.value) and "student.chat_template" in str(err.value)


def test_the_truncation_baseline_does_not_open_the_thinking_twice(opens_backend, qwen3_opens_thinking_dir):
    from bard_core.evaluate import _truncated

    config = load_config(overrides=["eval.samples=1", "eval.answer_tokens=3"])
    backend = opens_backend
    problem = {"uid": "p1", "question": QUESTION, "answer": "5", "choices": None, "source": "t"}
    model = EvalModel(name="base", model=qwen3_opens_thinking_dir, mode="truncate")
    [(thought, text, _)] = _truncated([(problem, 4)], backend, config, model, qwen3_opens_thinking_dir)
    assert text.startswith("<think>\n") and text.count("<think>") == 1 and "</think>" in text


# ---------------------------------------------------------------- EOS and pad


def test_a_base_checkpoint_ends_and_stops_at_its_templates_end_of_turn(qwen3_base_dir):
    raw = AutoTokenizer.from_pretrained(qwen3_base_dir)
    assert raw.eos_token == "<|endoftext|>" and end_of_turn(raw) == "<|im_end|>"
    im_end, endoftext = raw.convert_tokens_to_ids("<|im_end|>"), raw.convert_tokens_to_ids("<|endoftext|>")

    student = StudentConfig(model=qwen3_base_dir)
    tokenizer = load_tokenizer(student, CFG)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    ids = trained_ids(tokenizer, ROW)
    assert ids[-2:] == tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]  # SFT ends on the turn's end
    eos = load_model(student, tokenizer).generation_config.eos_token_id
    assert eos == [im_end, endoftext]  # the SFT model and TRL's GRPO rollouts stop at it, and at the old EOS

    # The hf backend stops at the end of turn even for the checkpoint as it is (a teacher, an evaluated base model).
    assert HFBackend(HFBackendConfig(backend="hf", model=qwen3_base_dir)).eos_ids == [endoftext, im_end]


def test_pad_equal_to_eos_keeps_the_last_end_of_turn_in_the_loss(smollm2_dir):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = load_tokenizer(StudentConfig(model=smollm2_dir), CFG)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    short = {**ROW, "completion": [{"role": "assistant", "content": "<think>\n5\n</think>\n\n\\boxed{5}"}]}
    rows = []
    for row in (ROW, short):  # TRL's features: the rendered row, labels on the completion only
        turns = row["prompt"] + row["completion"]
        whole = tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True)["input_ids"]
        completion = trained_ids(tokenizer, row)
        rows.append({"input_ids": whole, "labels": [-100] * (len(whole) - len(completion)) + completion})
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(rows)
    end = tokenizer.eos_token_id
    for labels, row in zip(batch["labels"].tolist(), rows):
        last = len(row["input_ids"]) - 1 - row["input_ids"][::-1].index(end)  # the completion's own end of turn
        assert labels[last] == end  # learnt, though the padding after it is the same id (and is not learnt)
        assert all(label == -100 for label in labels[len(row["input_ids"]) :])
    assert HFBackend(HFBackendConfig(backend="hf", model=smollm2_dir)).eos_ids == [end]


def test_lora_trains_the_think_tags_a_vocabulary_lacked(smollm2_dir, tmp_path):
    """LoRA freezes the embeddings, so the tag rows SmolLM2's vocabulary gets added would stay as initialised and
    the student could never write them (a real 135M run wrote " tempfile" where `</think>` belonged). The embeddings
    train with the adapters when tags were added, and the merged model has them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM

    from bard_core.training.sft_trl import TRLSFTRecipe

    rows = [{"split": "train", "kind": "budget",
             "prompt": [{"role": "user", "content": f"What is {i} + 1? Think for at most 8 tokens."}],
             "completion": [{"role": "assistant", "content": f"<think>\n{i} + 1 = {i + 1}\n</think>\n\n\\boxed{{{i + 1}}}"}]}
            for i in range(8)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "sft.parquet")
    config = load_config(None, [f"student.model={smollm2_dir}", "student.tokenizer=null", f"budget.tokenizer={smollm2_dir}",
                                "budget.tokenizer_mismatch_reason=a test of the SFT recipe alone, the scripted engines unused",
                                "sft.lora={r: 4}",
                                "sft.max_steps=3", "sft.batch_size=4", "sft.learning_rate=0.05", "sft.report_to=[]"],
                         home=str(tmp_path / "home"))  # fmt: skip
    recipe = TRLSFTRecipe(config, [str(tmp_path / "sft.parquet")], tmp_path / "out")
    recipe.setup()
    tags = recipe.tag_ids()
    base = load_model(config.student, recipe.tokenizer).get_input_embeddings().weight.detach().clone()
    recipe.train()
    recipe.save()
    recipe.cleanup()
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model").get_input_embeddings().weight
    assert trained.shape == base.shape and len(tags) == 2 and min(tags) >= 49152, "the tags were added"
    for tag in tags:
        assert not torch.equal(trained[tag], base[tag]), "the tag's embedding trained"
