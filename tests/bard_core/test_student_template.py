"""The student's chat template must keep the thinking in assistant turns: SFT renders one row through it first
and stops, naming the model and `student.chat_template`, when the thinking is gone."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bard_core.config import BudgetConfig, StudentConfig, load_config
from bard_core.errors import BardError
from bard_core.student import CHAT_TEMPLATE, check_chat_template, load_tokenizer
from bard_core.training.sft_trl import TRLSFTRecipe

DEMO_TOKENIZER = str(Path(__file__).resolve().parents[2] / "configs" / "demo-tokenizer.json")

# Modelled on DeepSeek-R1-Distill's template: an assistant turn keeps only what follows `</think>`.
DROPS_THINKING = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<｜User｜>{{ message['content'] }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "<｜Assistant｜>{{ content }}<｜end▁of▁sentence｜>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
)

ROW = {
    "prompt": [{"role": "user", "content": "what is 2 plus 3\nThink for at most 12 tokens."}],
    "completion": [{"role": "assistant", "content": "<think>\n2 plus 3 is 5\n</think>\n\n\\boxed{5}"}],
}


def test_the_demo_template_keeps_the_thinking():
    demo = load_config()
    tokenizer = load_tokenizer(demo.student)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    check_chat_template(tokenizer, ROW, demo.budget, "demo")  # no error


def test_a_template_that_drops_the_thinking_stops_with_the_fix():
    tokenizer = load_tokenizer(StudentConfig(tokenizer=DEMO_TOKENIZER, chat_template=DROPS_THINKING))
    assert tokenizer.chat_template == DROPS_THINKING, "student.chat_template replaces the tokenizer's template"
    with pytest.raises(BardError) as err:
        check_chat_template(tokenizer, ROW, BudgetConfig(), "models/r1-distill")
    assert "models/r1-distill" in str(err.value) and "student.chat_template" in str(err.value)
    assert "drops the thinking" in str(err.value)


def test_chat_template_overrides_a_model_directorys_own(tiny_model):
    tokenizer = load_tokenizer(StudentConfig(model=tiny_model, chat_template=DROPS_THINKING))
    assert tokenizer.chat_template == DROPS_THINKING
    assert load_tokenizer(StudentConfig(model=tiny_model)).chat_template != DROPS_THINKING


def test_sft_setup_checks_the_template_before_training(tmp_path):
    rows = [{**ROW, "split": "train", "kind": "budget"}]
    data = tmp_path / "sft.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    config = load_config(overrides=[f"student.chat_template={DROPS_THINKING!r}", "sft.report_to=[]"])
    with pytest.raises(BardError, match="drops the thinking"):
        TRLSFTRecipe(config, [str(data)], tmp_path / "out").setup()
    assert not (tmp_path / "out" / "model").exists()
