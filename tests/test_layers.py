"""The shape of the code: imports point down the layers, and each stage is declared once, in tasks/graph.py."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Lowest first: a module may import its own layer and those below it, never one above (not even inside a function).
LAYERS = ["bard_core", "storage", "tasks", "flows", "deployments"]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((ROOT / layer).rglob("*.py")):
            for name in imports(path):
                top = name.split(".")[0]
                if top in LAYERS and LAYERS.index(top) > rank:
                    upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not upward, "\n".join(upward)


def test_every_stage_is_declared_once_and_everything_else_reads_the_declaration():
    from tasks.graph import ORDER, STAGES

    assert ORDER == ["problems", "teacher", "compress", "assemble", "sft", "grpo", "eval", "report"]
    declared = re.findall(r'^\s+Stage\("(\w+)"', (ROOT / "tasks/graph.py").read_text(), re.M)
    assert declared == ORDER
    # No second list of the stage names anywhere in the code (the Prefect run form and the config read ORDER).
    names = r"\[\s*['\"]problems['\"],\s*['\"]teacher['\"],\s*['\"]compress['\"]"
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            assert not re.search(names, path.read_text()), f"{path.relative_to(ROOT)} lists the stages again"
    assert not (ROOT / "flows/compress.py").exists(), "one generic subflow runs any stage"
    for stage in STAGES.values():  # inputs come before the stage that reads them
        if isinstance(stage.inputs, tuple):
            assert all(ORDER.index(i) < ORDER.index(stage.name) for i in stage.inputs), stage.name


AUDIT = """
import collections, sys
opened = collections.Counter()
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].endswith(".jsonl") and "r" in str(args[1] or "r"):
        opened[args[0]] += 1
sys.addaudithook(hook)
from flows.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
print(dict(opened))
"""


def test_a_run_with_variants_reads_each_source_file_once_to_compute_its_keys(tmp_path):
    source = tmp_path / "problems.jsonl"
    source.write_text("".join(f'{{"question": "What is {i} + 1?", "answer": "{i + 1}"}}\n' for i in range(20)))
    overrides = ["--set", f"problems.sources=[{{kind: jsonl, path: '{source}', name: sums}}]"]
    done = subprocess.run([sys.executable, "-c", AUDIT, "run", "--dry-run", "--config", "configs/demo-ablations.yaml", "--home",
                           str(tmp_path / "home"), *overrides], cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "grpo@additive" in done.stdout  # every variant's keys were computed
    opened = eval(done.stdout.strip().splitlines()[-1])
    assert opened == {str(source): 1}, opened
