"""A tiny Qwen3-architecture causal LM built from config, with a real word-level tokenizer and a
chat template, saved to a directory that `from_pretrained` and `transformers serve` can load offline;
and `transformers serve` started on 127.0.0.1 as a real OpenAI-compatible server. Used by the tests
and by bench/generate/run.py.

Its weights are random, so the next-token distribution is close to uniform over the small
vocabulary: sampled text ends with `<|im_end|>` (EOS) after about `len(WORDS)` tokens on average,
which gives both "stop" and "length" finishes at small `max_tokens`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

WORDS = (
    "system user assistant the a one two three four five six seven eight nine ten plus minus times is equals answer "
    "so then first next check wait add carry total result question think step"
).split()
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
SPACES = [" ", "\n"]
# Ordinary words, not special tokens (as in Qwen3), so decoding with skip_special_tokens keeps them.
THINK = ["<think>", "</think>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{{ prefill }}{% endif %}"
)


def build_tiny_model(
    out_dir: str | Path, seed: int = 0, hidden_size: int = 64, layers: int = 2, think_prefill: bool = False
) -> Path:
    """Save the model and tokenizer to `out_dir`. `think_prefill` ends the generation prompt with
    "<think>\\n", as DeepSeek-R1's template does, so a server that parses reasoning (`transformers
    serve` does for Qwen3 models) returns the text before "</think>" as `reasoning_content`."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    vocab = {tok: i for i, tok in enumerate(SPECIAL + THINK + SPACES + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Spaces and newlines are tokens of their own and decoding concatenates, so decode(encode(t)) == t
    # for any text over the vocabulary (servers match the chat template's text against decoded ids).
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE.replace("{{ prefill }}", "<think>\n" if think_prefill else "")
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
        max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"],
    )  # fmt: skip
    model = Qwen3ForCausalLM(config)
    # do_sample: `transformers serve` samples only when the model's generation config does (it then
    # honours the request's temperature; temperature 0 means greedy). The hf backend sets its own.
    model.generation_config = GenerationConfig(
        do_sample=True, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"]
    )
    model.save_pretrained(out_dir)
    return out_dir


def with_qwen3_chat_template(model_dir: str | Path, out_dir: str | Path) -> Path:
    """A copy of a tiny model whose tokenizer carries Qwen3's own chat template (the one TRL ships as
    `qwen3.jinja`, byte-identical to the Hub's; `build_tiny_model`'s is a plain ChatML): its generation prompt
    ends with an empty "<think>\n\n</think>\n\n" when `enable_thinking` is false."""
    import shutil

    import trl
    from transformers import AutoTokenizer

    shutil.copytree(model_dir, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log_path: str | Path, startup_timeout_s: float = 90.0) -> subprocess.Popen:
    """`transformers serve` on 127.0.0.1:port (models are loaded by the directory named in each request),
    returned once /health answers. Offline, one torch thread, its output appended to `log_path`."""
    exe = str(Path(sys.executable).with_name("transformers"))
    # Unbuffered, so the access log ("POST ... 200") can be watched while it runs.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                if reply.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"transformers serve did not answer /health within {startup_timeout_s} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
