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
    assert "Finished in state Completed" in cold.stdout + cold.stderr

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
