"""The `bard` command as a user runs it: real subprocesses, a real Prefect ephemeral API, a real Ray."""

import json
import subprocess
import time

from tests.conftest import BARD, DATA


def bard(*args, check=True):
    result = subprocess.run([BARD, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_run_problems_then_cached_then_query(tmp_path):
    home = str(tmp_path / "home")
    config = tmp_path / "c.yaml"
    config.write_text(
        "problems:\n  shard_rows: 20\n  sources:\n"
        f"    - {{kind: aime, path: '{DATA}/aime24.jsonl', split: test}}\n"
        "    - {kind: reasoning_gym, name: chain_sum, size: 50, seed: 1}\n"
    )
    started = time.monotonic()
    cold = bard("run", "--stages", "problems", "--config", str(config), "--home", home)
    cold_s = time.monotonic() - started
    assert "problems: running" in cold.stdout and "Done in" in cold.stdout

    started = time.monotonic()
    cached = bard("run", "--stages", "problems", "--config", str(config), "--home", home)
    cached_s = time.monotonic() - started
    assert "cached" in cached.stdout and "nothing to run" in cached.stdout
    assert cached_s < cold_s

    counts = bard("query", "select source, count(*) as n from problems group by 1 order by 1",
                  "--format", "json", "--home", home)
    assert [json.loads(line) for line in counts.stdout.splitlines()] == [
        {"source": "aime24", "n": 30}, {"source": "chain_sum", "n": 50}]
    table = bard("query", "select count(*) from problems_rejected", "--home", home)
    assert "0" in table.stdout
    csv = bard("query", "select uid from problems order by uid limit 2", "--format", "csv", "--home", home)
    assert csv.stdout.splitlines()[0] == '"uid"' and len(csv.stdout.splitlines()) == 3
    out = tmp_path / "p.parquet"
    bard("query", "select * from problems", "--format", "parquet", "--out", str(out), "--home", home)
    import pyarrow.parquet as pq
    assert pq.read_table(out).num_rows == 80

    key = json.loads(bard("query", "select key from artifacts", "-f", "json", "--home", home).stdout)["key"]
    shown = json.loads(bard("artifacts", "--home", home, "show", key[:8]).stdout)
    assert shown["key"] == key and shown["flow_run_id"]
    assert key[:12] in bard("artifacts", "--home", home).stdout
    dry = bard("run", "--stages", "problems", "--config", str(config), "--home", home, "--dry-run")
    assert "cached" in dry.stdout


def test_user_errors_print_one_message_and_no_traceback(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("problems:\n  shard_rowz: 3\n")
    missing = tmp_path / "missing.jsonl"
    cases = [
        (["config", "show", "--config", str(bad_key)], "problems.shard_rowz: unknown key"),
        (["config", "show", "--set", "problems.shard_rows=zero"], "problems.shard_rows"),
        (["run", "--stages", "problems", "--home", str(tmp_path),
          "--set", f'problems.sources=[{{"kind":"jsonl","path":"{missing}"}}]'], f"{missing}: cannot read"),
        (["run", "--stages", "nope"], "unknown stage nope"),
        (["query", "drop view problems", "--home", str(tmp_path)], "read-only"),
        (["artifacts", "--home", str(tmp_path), "show", "zzz"], "no finished artifact"),
    ]
    for args, message in cases:
        result = bard(*args, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr


def test_config_show_prints_the_resolved_config():
    shown = bard("config", "show", "--set", "problems.shard_rows=33").stdout
    assert "shard_rows: 33" in shown and "template: Think for at most {budget} tokens." in shown


def test_export_reward_func_writes_a_file_openrlhf_can_call(tmp_path):
    import importlib.util

    out = tmp_path / "reward_func.py"
    printed = bard("export", "reward-func", str(out), "--set", "reward.over_budget_value=-0.5").stdout
    assert str(out) in " ".join(printed.split())
    spec = importlib.util.spec_from_file_location("reward_func", str(out))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prompt = "<|im_start|>user\nWhat is 2+2?\nThink for at most 5 tokens.<|im_end|>\n<|im_start|>assistant\n"
    label = json.dumps({"answer": "4", "budget": 5})
    short = module.reward_func([prompt + "<think>2+2=4</think>\\boxed{4}"], [prompt], [label])
    long = module.reward_func([prompt + "<think>" + "let me add the numbers " * 10 + "</think>\\boxed{4}"], [prompt], [label])
    wrong = module.reward_func([prompt + "<think>2+2=5</think>\\boxed{5}"], [prompt], [label])
    assert (short["rewards"], long["rewards"], wrong["rewards"]) == (1.0, -0.5, 0.0)


def test_pipeline_through_teacher_and_compress_on_a_real_openai_server(tmp_path, tiny_model, prefect_api):
    """problems -> teacher -> compress as one `bard run`, both engines an OpenAI-compatible server
    (`transformers serve`) on 127.0.0.1; Prefect progress and table artifacts; the API key never shown."""
    import os

    from prefect.client.orchestration import get_client

    from tests.bard_core.generation.local_models import free_port, start_server, stop_server

    source = tmp_path / "toy.jsonl"
    source.write_text("".join(json.dumps({"question": f"one plus {w}", "answer": "2"}) + "\n"
                              for w in ["one", "two", "three", "four", "five", "six"]))  # fmt: skip
    port = free_port()
    secret = "sk-test-never-print-me-42"
    gen = (f"{{backend: openai, base_url: 'http://127.0.0.1:{port}/v1', model: '{tiny_model}', "
           "api_key_env: BARD_TEST_KEY, concurrency: 4, timeout_s: 60, max_attempts: 3}")  # fmt: skip
    config = tmp_path / "c.yaml"
    config.write_text(
        f"problems: {{sources: [{{kind: jsonl, path: '{source}'}}]}}\n"
        f"budget: {{tokenizer: '{tiny_model}/tokenizer.json', count: completion}}\n"
        "budget_sampling: {mode: uniform, min_budget: 1, max_budget: 12, per_chain: 2}\n"
        f"teacher: {{generation: {gen}, sampling: {{temperature: 1.0, max_tokens: 16, n: 2}}, commit_rows: 2}}\n"
        f"compress: {{generation: {gen}, sampling: {{max_tokens: 12}}, only_correct: false}}\n"
        "ray: {num_cpus: 1}\n"
    )
    home = tmp_path / "home"
    os.environ["BARD_TEST_KEY"] = secret
    server = start_server(port, tmp_path / "serve.log")
    try:
        run = bard("run", "--stages", "problems,teacher,compress", "--config", str(config), "--home", str(home))
    finally:
        stop_server(server)
        del os.environ["BARD_TEST_KEY"]
    shown = bard("config", "show", "--config", str(config)).stdout
    assert "BARD_TEST_KEY" in shown
    written = "".join(p.read_text() for p in home.glob("artifacts/*/*/*.json"))
    assert secret not in run.stdout + run.stderr + shown + written

    samples = bard("query", "select count(*) as n, count(distinct uid) as u, count(*) filter (where completion_tokens > 0) as t "
                   "from teacher_samples", "-f", "json", "--home", str(home)).stdout  # fmt: skip
    assert json.loads(samples) == {"n": 12, "u": 12, "t": 12}
    stats = json.loads(bard("query", "select rewrites from compress_stats where tier = 'all'",
                            "-f", "json", "--home", str(home)).stdout)  # fmt: skip
    rewrites = json.loads(bard("query", "select count(*) as n from compressions", "-f", "json", "--home", str(home)).stdout)
    assert stats["rewrites"] == rewrites["n"] > 0

    with get_client(sync_client=True) as client:
        artifacts = {(a.key, a.type): a for a in client.read_artifacts()}
    assert artifacts[("teacher-progress", "progress")].data == 100.0
    assert ("teacher-summary", "table") in artifacts and ("compress-summary", "table") in artifacts
