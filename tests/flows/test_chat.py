"""`bard chat --prompt`: one question answered in a subprocess, as a user runs it, on a tiny model placed in the
store as this config's sft artifact (so `sft` resolves, and the budget template comes from the artifact)."""

import re
import shutil
import subprocess

from bard_core.config import load_config
from storage.artifacts import ArtifactStore
from tasks import graph
from tests.conftest import BARD


def _chat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BARD, "chat", *args], capture_output=True, text=True, timeout=300)


def test_one_shot_chat_on_the_sft_artifact(tmp_path, tiny_model):
    home = str(tmp_path / "home")
    cfg = load_config(None, [], home)
    store = ArtifactStore(home)
    budget = {"template": "Think for at most {budget} tokens.", "separator": "\n", "think_open": "<think>", "think_close": "</think>"}
    store.begin("assemble", graph.key("assemble", cfg), {"budget": budget}, {})
    path = store.begin("sft", graph.key("sft", cfg), {"student": {}}, {"assemble": graph.key("assemble", cfg)})
    shutil.copytree(tiny_model, path / "model")
    store.finish("sft", graph.key("sft", cfg), graph.STAGES["sft"].version, {"assemble": graph.key("assemble", cfg)}, {})

    done = _chat("sft", "--home", home, "--budget", "4", "--hard", "--answer-tokens", "3", "--prompt", "one plus two")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<think>") and "</think>" in done.stdout
    spent = re.search(r"\[thinking (\d+)/4 tokens, answer (\d+) tokens", done.stdout)
    assert spent and int(spent.group(1)) <= 4 and int(spent.group(2)) <= 3, done.stdout

    missing = _chat("grpo", "--home", home, "--prompt", "q")
    assert missing.returncode == 1 and "not built yet" in missing.stderr and "Traceback" not in missing.stderr


def test_a_directory_without_a_template_is_refused_clearly(tiny_model):
    done = _chat(tiny_model, "--budget", "4", "--prompt", "one plus two")
    assert done.returncode == 1
    assert "error:" in done.stderr and "no budget template known" in done.stderr and "Traceback" not in done.stderr
