"""The `problems` stage end to end on a real local Ray: caching, invalidation, refresh, kill-and-resume."""

import json
import subprocess
from pathlib import Path

import pytest

from bard_core.config import load_config
from storage.query import run_query
from tasks import graph, problems
from tests.conftest import BARD, kill_9_when


def write_jsonl(path: Path, n: int, offset: int = 0) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"question": f"What is {i + offset} plus 1?", "answer": str(i + offset + 1)}) + "\n")
    return path


def config_for(tmp_path, source: Path, **sets):
    overrides = [f'problems.sources=[{{"kind":"jsonl","path":"{source}"}}]', "problems.shard_rows=10"]
    overrides += [f"{k}={v}" for k, v in sets.items()]
    return load_config(None, overrides, home=str(tmp_path / "home"))


def test_build_caches_and_invalidates(tmp_path, ray_local):
    source = write_jsonl(tmp_path / "p.jsonl", 35)
    cfg = config_for(tmp_path, source)
    first = graph.build("problems", cfg)
    assert first.rows("problems") == 35 and len(first.tables["problems"]) == 4
    assert first.stats["shards"] == 4 and first.stats["shards_resumed"] == 0
    assert not (Path(first.path) / "_parts").exists()
    assert graph.build("problems", cfg) == first, "same inputs: the finished artifact is reused as it is"

    changed_config = graph.build("problems", config_for(tmp_path, source, **{"problems.max_answer_chars": 500}))
    assert changed_config.key != first.key
    write_jsonl(source, 36)  # the same path with other content is another input
    changed_file = graph.build("problems", cfg)
    assert changed_file.key not in (first.key, changed_config.key) and changed_file.rows("problems") == 36
    assert run_query(cfg.home, "select count(*) as n from problems").column("n")[0].as_py() == 36

    refreshed = graph.build("problems", cfg, refresh=True)
    assert refreshed.key == changed_file.key and refreshed.created_at > changed_file.created_at
    assert refreshed.content_hash == changed_file.content_hash


@pytest.mark.slow  # 57 s; the teacher's kill-and-resume (test_generation_stages.py) stays in `make test`
def test_kill_9_midway_then_resume_gives_the_same_artifact(tmp_path, ray_local):
    source = write_jsonl(tmp_path / "big.jsonl", 60_000)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"problems:\n  shard_rows: 1000\n  sources: [{{kind: jsonl, path: '{source}'}}]\nray:\n  num_cpus: 1\n"
    )
    home_a = tmp_path / "a"
    cmd = [BARD, "stage", "problems", "--config", str(config), "--home"]

    parts = home_a / "artifacts" / "problems"
    kill_9_when(cmd + [str(home_a)], lambda: len(list(parts.glob("*/_parts/problems_rejected/part-*.parquet"))) >= 5)
    assert not list(parts.glob("*/manifest.json")), "killed before the manifest: not complete"
    done_before = len(list(parts.glob("*/_parts/problems_rejected/part-*.parquet")))

    subprocess.run(cmd + [str(home_a)], check=True, capture_output=True)
    resumed = json.loads(next(parts.glob("*/manifest.json")).read_text())
    fresh = graph.build("problems", load_config(config, home=str(tmp_path / "uninterrupted"))).model_dump()
    assert resumed["stats"]["shards_resumed"] >= done_before >= 5
    assert fresh["stats"]["shards_resumed"] == 0
    assert resumed["content_hash"] == fresh["content_hash"]
    assert resumed["tables"] == fresh["tables"]
    assert sum(s["rows"] for s in resumed["tables"]["problems"]) == 60_000


def test_hostile_lines_are_rejected_rows_on_ray_and_the_stage_finishes(tmp_path, ray_local):
    """Each of these lines failed the whole stage in its Ray worker (ValueError, RecursionError, or a
    UnicodeEncodeError when the shard was written): now each is a rejected row, and the BOM is not data."""
    source = tmp_path / "hostile.jsonl"
    source.write_bytes(b"\n".join([
        b'\xef\xbb\xbf{"question": "first?", "answer": "1"}',
        b'{"question": "big?", "answer": ' + b"7" * 5000 + b"}",
        b'{"question": "deep?", "answer": "1", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        b'{"question": "lone \\ud800?", "answer": "1"}',
        b'{"question": "last?", "answer": "2"}',
    ]) + b"\n")
    cfg = config_for(tmp_path, source, **{"problems.shard_rows": 2})
    manifest = graph.build("problems", cfg)
    assert manifest.rows("problems") == 2 and manifest.rows("problems_rejected") == 3
    rejected = run_query(cfg.home, "select line, reason from problems_rejected order by line").to_pylist()
    assert [r["line"] for r in rejected] == [2, 3, 4]
    assert "4300 digits" in rejected[0]["reason"] and "nested too deeply" in rejected[1]["reason"]
    assert "lone surrogate" in rejected[2]["reason"]


def test_a_source_unreadable_in_a_ray_worker_fails_naming_the_file(tmp_path, ray_local):
    """Not `RayTaskError(EOFError)`: one BardError naming the file and the last line read."""
    import gzip

    import pytest

    from bard_core import problems as stage
    from bard_core.errors import BardError
    from tasks.ray_runtime import run_shards

    source = tmp_path / "p.jsonl.gz"
    with gzip.open(source, "wt") as f:
        f.write("".join(json.dumps({"question": f"{i}+1?", "answer": i + 1}) + "\n" for i in range(50)))
    cfg = config_for(tmp_path, source)
    specs = stage.plan(cfg.problems)
    source.write_bytes(source.read_bytes()[:60])  # truncated after the plan, as a file being rewritten is
    with pytest.raises(BardError, match=r"p.jsonl.gz.*: cannot read the jsonl source: EOFError") as err:
        run_shards(problems._build_shard, specs[:1], cfg.problems, str(tmp_path / "out"), label="problems")
    assert "Traceback" not in str(err.value)
