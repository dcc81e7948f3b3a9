"""Stages `eval` and `report` on a tiny model: the budget sweep's rows, the truncation baseline, metrics
stored beside the samples, the report with its plots, `bard report` and `bard compare`."""

import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from bard_core.budget import add_budget
from bard_core.config import load_config
from bard_core.evaluate import messages
from bard_core.metrics import budget_metrics
from tasks import graph, report
from tests.conftest import BARD

BUDGETS = [4, 8, 16]


def write_config(tmp: Path, model: str) -> Path:
    source = tmp / "toy.jsonl"
    source.write_text("".join(json.dumps({"question": f"one plus {i} is", "answer": str(i + 1)}) + "\n" for i in range(8)))
    other = tmp / "other.jsonl"
    other.write_text("".join(json.dumps({"question": f"two times {i} is", "answer": str(2 * i)}) + "\n" for i in range(3)))
    path = tmp / "c.yaml"
    path.write_text(f"""
problems: {{sources: [{{kind: jsonl, path: '{source}', split: test}}, {{kind: jsonl, path: '{other}', split: test}}]}}
budget: {{tokenizer: '{model}/tokenizer.json'}}
eval:
  models: [{{name: tiny, model: '{model}'}}, {{name: tiny-cut, model: '{model}', mode: truncate}}]
  budgets: {BUDGETS}
  samples: 2
  limit: 5
  answer_tokens: 8
  generation: {{backend: hf, num_threads: 1}}
ray: {{num_cpus: 1}}
""")
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, ray_local, tiny_model):
    tmp = tmp_path_factory.mktemp("eval")
    config_path = write_config(tmp, tiny_model)
    config = load_config(config_path, home=str(tmp / "home"))
    graph.build("problems", config)
    return config_path, config, graph.build("eval", config)


def samples(manifest) -> list[dict]:
    return duckdb.sql(f"select * from read_parquet({manifest.files('eval_samples')!r})").to_arrow_table().to_pylist()


def test_every_model_problem_budget_and_sample_is_stored(evaluated):
    _, config, manifest = evaluated
    rows = samples(manifest)
    assert manifest.rows("eval_problems") == 5 + 3  # limit 5 per benchmark
    assert len(rows) == 2 * 8 * len(BUDGETS) * 2 == manifest.stats["samples"]
    assert len({r["uid"] for r in rows}) == len(rows)
    assert {r["benchmark"] for r in rows} == {"toy", "other"}
    cells = {(r["model"], r["problem_uid"], r["budget"]) for r in rows}
    assert len(cells) == 2 * 8 * len(BUDGETS)
    # The same seeds for both models: paired comparisons.
    seeds = {}
    for r in rows:
        seeds.setdefault((r["problem_uid"], r["budget"], r["sample_idx"]), set()).add(r["seed"])
    assert all(len(s) == 1 for s in seeds.values())
    for r in rows:
        assert r["within_budget"] == (r["thinking_tokens"] <= r["budget"] * (1 + config.reward.tau))


def test_budget_text_only_in_budget_mode(evaluated):
    _, config, _ = evaluated
    budgeted, truncated = config.eval.models
    assert messages("q", 8, budgeted, config)[-1]["content"] == add_budget("q", 8, config.budget)
    assert messages("q", 8, truncated, config)[-1]["content"] == "q"


def test_the_truncation_baseline_cuts_thinking_at_the_budget_then_answers(evaluated):
    """Budget mode may think up to max_tokens_factor x B; the baseline generates at most B thinking tokens
    and then at most answer_tokens after a closing tag it writes itself when the model had not."""
    _, config, manifest = evaluated
    rows = samples(manifest)
    cut = [r for r in rows if r["model"] == "tiny-cut"]
    assert all(r["completion_tokens"] <= r["budget"] + config.eval.answer_tokens for r in cut)
    assert all(config.budget.think_close in r["completion"] for r in cut)
    budget_mode = [r for r in rows if r["model"] == "tiny"]
    assert any(r["completion_tokens"] > r["budget"] + config.eval.answer_tokens for r in budget_mode), "room to overshoot"


def test_stored_metrics_are_those_of_the_stored_samples(evaluated):
    _, config, manifest = evaluated
    stored = duckdb.sql(f"select * from read_parquet({manifest.files('eval_metrics')!r})").to_arrow_table().to_pylist()
    recomputed = budget_metrics(samples(manifest), config.reward.tau)
    assert len(stored) == 2 * 2 * len(BUDGETS)
    for a, b in zip(stored, recomputed, strict=True):
        assert a == pytest.approx(b)
    correlation = duckdb.sql(f"select * from read_parquet({manifest.files('eval_correlation')!r})").fetchall()
    assert len(correlation) == 4  # per model and benchmark


def test_report_with_plots_then_cli_report_and_compare(evaluated, tmp_path):
    config_path, config, manifest = evaluated
    built = graph.build("report", config)
    text = Path(built.stats["report"]).read_text()
    assert "## toy" in text and "## other" in text and "### tiny-cut (truncate)" in text
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(images) == 2 * 4
    for image in images:
        data = (Path(built.stats["report"]).parent / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000

    out = tmp_path / "again"
    home = ["--config", str(config_path), "--home", config.home]
    subprocess.run([BARD, "report", manifest.key[:8], "--out", str(out), *home], check=True, capture_output=True)
    assert (out / "report.md").read_text().split("- **generated**")[0] == text.split("- **generated**")[0]

    shown = subprocess.run([BARD, "compare", "tiny", f"{manifest.key}:tiny-cut", *home], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    toy_4 = next(line for line in shown.stdout.splitlines() if " toy " in line and " 4 " in line)
    metrics = {(m["model"], m["benchmark"], m["budget"]): m for m in budget_metrics(samples(manifest), config.reward.tau)}
    assert f"{metrics[('tiny', 'toy', 4)]['thinking_mean']:.1f}" in toy_4
    assert f"{metrics[('tiny-cut', 'toy', 4)]['thinking_mean']:.1f}" in toy_4

    wrong = subprocess.run([BARD, "compare", "tiny", "nope", *home], capture_output=True, text=True)
    assert wrong.returncode == 1 and "no model 'nope'" in wrong.stderr


def test_compare_and_the_report_say_which_budgets_differ_beyond_noise(ray_local, tmp_path):
    """The demo's scripted engines (seconds, no model): the reference always answers within the budget; the
    teacher ignores it, so at budget 8 its solution is cut at max_tokens, unanswered, on every problem (12 discordant
    pairs: McNemar's p = 2 / 2^12), while at 512 both are right on every problem (nothing to tell apart)."""
    tokenizer = Path(__file__).resolve().parents[2] / "configs" / "demo-tokenizer.json"
    path = tmp_path / "c.yaml"
    path.write_text(f"""
problems: {{sources: [{{kind: arithmetic, size: 12, seed: 1, split: test}}]}}
budget: {{tokenizer: '{tokenizer}'}}
eval:
  models:
    - {{name: reference, generation: {{backend: scripted, role: reference, tokenizer: '{tokenizer}'}}}}
    - {{name: teacher, generation: {{backend: scripted, role: teacher, slip_rate: 0.0, tokenizer: '{tokenizer}'}}}}
  budgets: [8, 512]
  samples: 1
  temperature: 0.0
ray: {{num_cpus: 1}}
""")
    config = load_config(path, home=str(tmp_path / "home"))
    graph.build("problems", config)
    manifest = graph.build("eval", config)
    metrics = duckdb.sql(f"select * from read_parquet({manifest.files('eval_metrics')!r})").to_arrow_table().to_pylist()
    cut = next(m for m in metrics if (m["model"], m["budget"]) == ("teacher", 8))
    assert (cut["pass1_mean"], cut["pass1_lo"], cut["over_budget"], cut["over_budget_hi"]) == (0.0, 0.0, 1.0, 1.0)
    assert cut["pass1_hi"] == pytest.approx(0.2425, abs=1e-4)  # Wilson, 0 of 12
    assert all(m["relerr_lo"] <= m["relerr_mean"] <= m["relerr_hi"] for m in metrics)

    home = ["--config", str(path), "--home", config.home]
    shown = subprocess.run([BARD, "compare", "reference", "teacher", *home], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "12/0 of 12" in next(line for line in lines if " 8 " in line) and "0.000488 *" in shown.stdout
    assert "0/0 of 12" in next(line for line in lines if " 512 " in line)
    assert "Significant differences in pass@1 at: arithmetic 8." in shown.stdout
    same = subprocess.run([BARD, "compare", "teacher", f"{manifest.key}:teacher", *home], capture_output=True, text=True)
    assert "No budget differs significantly in pass@1: the differences are within noise." in same.stdout, same.stderr

    text = Path(graph.build("report", config).stats["report"]).read_text()
    assert "| 8 | 1.000 | 0.0% | 0.375 | 0.000 | 100.0% | 8.375 | reference > teacher (p = 0.00049) |" in text
    assert "| 512 | " in text and " | within noise |" in text.split("| 512 | ", 1)[1].splitlines()[0]
    assert "| 8 | 0.000 [0.000, 0.242] |" in text and "| 100.0% [75.8%, 100.0%] |" in text


def test_multiple_choice_options_are_shuffled_with_a_seed_and_graded_by_shown_letter(tmp_path):
    from bard_core.evaluate import presented
    from bard_core.scoring.verify import grade

    config = load_config(home=str(tmp_path))
    problem = {"uid": "gpqa/1", "question": "Which gas?", "answer": "B", "choices": ["helium", "argon", "neon", "xenon"]}
    question, shown, gold = presented(problem, config)
    assert gold == "argon" and sorted(shown) == sorted(problem["choices"])
    assert presented(problem, config) == (question, shown, gold)  # seeded
    orders = {tuple(presented(dict(problem, uid=f"gpqa/{i}"), config)[1]) for i in range(20)}
    assert len(orders) > 1, "the order changes from problem to problem"
    letter = "ABCD"[shown.index("argon")]
    assert question.splitlines()[2 + shown.index("argon")] == f"{letter}) argon"
    right = grade(f"</think>\\boxed{{{letter}}}", gold, budget_cfg=config.budget, verify_cfg=config.verify, choices=shown)
    wrong = grade("</think>\\boxed{%s}" % "ABCD"[(shown.index("argon") + 1) % 4], gold, budget_cfg=config.budget,
                  verify_cfg=config.verify, choices=shown)  # fmt: skip
    assert right.correct is True and wrong.correct is False
    plain = {"uid": "x", "question": "1+1?", "answer": "2", "choices": None}
    assert presented(plain, config) == ("1+1?", None, "2")


def test_the_report_audits_the_compressions(evaluated, tmp_path, tiny_model):
    from tests.tasks.synthetic_upstream import write_upstream

    _, _, eval_manifest = evaluated
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps({"question": f"add {i} and {i + 1}", "answer": str(2 * i + 1)}) + "\n" for i in range(12)))
    config = load_config(overrides=[f"problems.sources=[{{kind: jsonl, path: '{source}'}}]",
                                    f"compress.generation={{backend: hf, model: '{tiny_model}'}}"],
                         home=str(tmp_path / "home"))  # fmt: skip
    graph.build("problems", config)
    _, compressions = write_upstream(config, samples=2, budgets=2, words=30)
    summary, suspects = report.audit_compressions(compressions, config)
    assert sum(s["compressions"] for s in summary) == compressions.rows("compressions")
    accepted = duckdb.sql(f"select count(*) from read_parquet({compressions.files('compressions')!r}) where accepted").fetchall()[0][0]
    assert sum(s["accepted"] for s in summary) == accepted

    text = report.render(eval_manifest, tmp_path / "out", compressions, config).read_text()
    assert "## Compression audit" in text and "| budget | rewrites | accepted |" in text
    assert f"{len(suspects)} suspect accepted rewrite(s)" in text


def test_a_killed_sweep_resumes_from_its_committed_chunks_even_with_another_chunk_size(evaluated, tmp_path):
    from tests.conftest import kill_9_when

    config_path, _, uninterrupted = evaluated
    home = tmp_path / "killed"
    overrides = ["eval.commit_rows=1"]
    config = load_config(config_path, overrides, home=str(home))
    graph.build("problems", config)
    cmd = [BARD, "stage", "eval", "--config", str(config_path), "--home", str(home), "--set", overrides[0]]
    kill_9_when(cmd, lambda: len(list(home.glob("artifacts/eval/*/_parts/eval_samples/*/part-*.parquet"))) >= 3)
    assert not list(home.glob("artifacts/eval/*/manifest.json"))

    # The rerun without the override: commit_rows is not keyed, and the parts were cut one problem apart.
    resumed = graph.build("eval", load_config(config_path, home=str(home)))
    assert resumed.path == graph.build("eval", config).path
    resumed_counts = [c["chunks_resumed"] for c in resumed.stats["generation"].values()]
    assert resumed_counts[0] >= 3, "the first model's committed chunks were kept"
    assert sorted(r["uid"] for r in samples(resumed)) == sorted(r["uid"] for r in samples(uninterrupted))


def test_the_report_is_published_as_a_prefect_markdown_artifact(evaluated, prefect_api):
    from prefect.client.orchestration import get_client

    config_path, config, _ = evaluated
    run = subprocess.run([BARD, "run", "--stages", "eval,report", "--refresh", "report", "--config", str(config_path),
                          "--home", config.home], capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    with get_client(sync_client=True) as client:
        reports = [a for a in client.read_artifacts() if (a.key, a.type) == ("bard-report", "markdown")]
    markdown = max(reports, key=lambda a: a.created).data  # other tests' runs publish theirs to this API too
    assert markdown.startswith("# BARD evaluation report") and "### tiny-cut (truncate)" in markdown
