"""The demo profile end to end, shrunk (fewer problems, a few training steps, a small sweep): every stage of
`bard run` runs on this CPU and the report comes out. The full-size demo is `make demo` (see bench/demo)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BARD, ROOT

SMOKE = [
    "problems.sources=[{kind: arithmetic, size: 300, seed: 0, split: train}, {kind: arithmetic, size: 30, seed: 1, split: test}]",
    "sft.epochs=1", "sft.max_steps=12", "sft.lr_scheduler_kwargs={num_decay_steps: 4}", "sft.batch_size=16", "sft.num_threads=1",
    "grpo.max_steps=2", "grpo.prompts_per_step=2", "grpo.num_generations=4", "grpo.num_threads=1",
    "eval.budgets=[8, 24, 64]", "eval.limit=10", "eval.generation={backend: hf, num_threads: 1, batch_size: 32}",
]  # fmt: skip


def bard_run(home: Path, *options: str) -> subprocess.CompletedProcess:
    """`bard run` of the smoke settings as a user runs it, without a terminal (output captured)."""
    sets = [arg for item in SMOKE for arg in ("--set", item)]
    run = subprocess.run([BARD, "run", "--home", str(home), *options, *sets], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def querier(home: Path):
    def query(sql: str) -> list[dict]:
        out = subprocess.run([BARD, "query", sql, "-f", "json", "--home", str(home)], capture_output=True, text=True, check=True)
        return [json.loads(line) for line in out.stdout.splitlines()]

    return query


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    home = tmp_path_factory.mktemp("demo") / "home"
    return home, bard_run(home)


@pytest.fixture(scope="module")
def demo_home(demo_run) -> Path:
    return demo_run[0]


def test_the_demo_profile_runs_every_stage(demo_home):
    home, query = demo_home, querier(demo_home)
    for stage in ("problems", "teacher", "compress", "assemble", "sft", "grpo", "eval", "report"):
        assert list(home.glob(f"artifacts/{stage}/*/manifest.json")), stage

    (teacher,) = query("select count(*) as n, avg(correct::int) as ok from teacher_samples")
    assert teacher["n"] == 300 and 0.85 < teacher["ok"] < 1.0, "verified, with the scripted slips caught"
    (sft,) = query("select count(*) filter (where kind = 'budget') as budget, count(*) filter (where kind = 'standard') as std "
                   "from sft_dataset")  # fmt: skip
    assert sft["budget"] > 0 and sft["std"] > 0
    cells = query("select model, budget, count(*) as n from eval_samples group by all order by all")
    assert [(c["model"], c["budget"], c["n"]) for c in cells] == [
        (m, b, 10) for m in ("grpo", "reference", "sft") for b in (8, 24, 64)
    ]
    (floor,) = query("select max(thinking_tokens - budget) as over, avg(correct::int) as ok from eval_samples "
                     "where model = 'reference' and budget >= 24")  # fmt: skip
    assert floor["over"] <= 0 and floor["ok"] == 1.0, "the reference rewrite fits and is right"
    report = next(home.glob("artifacts/report/*/report.md")).read_text()
    assert "## arithmetic" in report and "## Compression audit" in report
    assert "| budget | grpo: pass@1 | L > B | rel. error | reference: pass@1 | L > B | rel. error | sft: pass@1" in report
    assert len(list(Path(next(home.glob("artifacts/report/*"))).glob("plots/*.png"))) == 4


LIBRARY_OUTPUT = ["\r", "it/s", "Warning", "pid=", "Generating train split", "Tokenizing", "Loading weights", "{'loss'"]


def test_a_run_without_a_terminal_prints_only_bards_lines(demo_run):
    """The demo's smoke run (tests/flows/test_demo.py: training tasks and generation engines in Ray workers, the
    report), as `make demo > demo.log` runs it: only bard's lines reach stdout and stderr."""
    home, run = demo_run
    for noise in LIBRARY_OUTPUT:
        assert noise not in run.stdout + run.stderr, f"{noise!r} reached the terminal:\n{run.stdout}\n{run.stderr}"
    assert "INFO" not in run.stderr, "Prefect's own lines stay in its logs"
    logs = {}
    for stage in ("problems", "teacher", "compress", "assemble", "sft", "grpo", "eval", "report"):
        (log,) = (home / "logs").glob(f"{stage}-*.log")
        logs[stage] = log.read_text()
        assert re.search(rf"^{stage}: running \(library output: {re.escape(str(log))}\)$", run.stdout, re.M)
        assert re.search(rf"^{stage}: \d+ rows in [\d.]+ s -> {re.escape(str(home))}/artifacts/{stage}/", run.stdout, re.M)
    assert "Headline figures" in run.stdout and re.search(r"reference .* 1\.000", run.stdout)
    assert re.search(r"^The report: .*/report\.md$", run.stdout, re.M)
    # the training worker's metrics, and the engines' weight loading, are in their stages' logs
    assert "(_recipe_in_worker pid=" in logs["sft"] and "'train_runtime'" in logs["sft"]
    assert "(Engine pid=" in logs["eval"] and "Loading weights" in logs["eval"]
    assert "\r" not in logs["sft"], "no per-step progress bar in the training log"


@pytest.mark.slow  # 90 s: the ablations reuse the demo's data; `make test-slow` (and CI) run it
def test_the_ablation_profile_adds_only_its_variants_and_sets_all_side_by_side(demo_home):
    """On the demo's home: the variants' stages run, the demo's artifacts are reused, one report has them all."""
    before = {p.parent.name for p in demo_home.glob("artifacts/*/*/manifest.json")}
    out = bard_run(demo_home, "--config", "configs/demo-ablations.yaml").stdout
    made = {p.parent.parent.name for p in demo_home.glob("artifacts/*/*/manifest.json") if p.parent.name not in before}
    assert made == {"assemble", "sft", "grpo", "eval", "report"}, "problems, teacher and compress are shared"
    assert len(list(demo_home.glob("artifacts/grpo/*/manifest.json"))) == 4, "the demo's, and three variants'"
    assert "grpo@additive" in out and "The report:" in out
    query = querier(demo_home)
    (standard,) = query("select count(*) as n from eval_samples where model = 'standard-truncated' and completion like '%</think>%'")
    assert standard["n"] == 30, "the truncation baseline of the standard model, every sample closed"
    models = {r["model"] for r in query("select distinct model from eval_samples")}
    assert models == {"reference", "sft", "grpo", "grpo-multiplicative", "grpo-additive", "standard-truncated",
                      "grpo-without-budget-sft"}  # fmt: skip
    report = max(demo_home.glob("artifacts/report/*/report.md"), key=lambda p: p.stat().st_mtime).read_text()
    assert "grpo-additive: pass@1" in report and "grpo@additive = this config with reward.combine: additive" in report
