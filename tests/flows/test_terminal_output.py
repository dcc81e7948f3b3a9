"""What `bard run` prints is bard's own: its progress lines, and one line for an error. (That a whole run prints
nothing else, the library output going to each stage's log file, is checked on the demo's smoke run in test_demo.py.)"""

import io
import re
import subprocess
from contextlib import redirect_stdout

from tasks.ray_runtime import ProgressLines
from tests.conftest import BARD, ROOT


def test_progress_without_a_terminal_is_occasional_lines_with_the_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("tasks.ray_runtime.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    with redirect_stdout(out), ProgressLines(interval_s=10) as progress:
        task = progress.add_task("sft steps", total=None)
        progress.reset(task, total=100, completed=20)  # a resumed run: the time left counts this run's steps only
        for step in range(21, 101):
            clock[0] += 0.5
            progress.update(task, completed=step)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == ["sft steps: 40/100, about 00:00:30 left", "sft steps: 60/100, about 00:00:20 left",
                     "sft steps: 80/100, about 00:00:10 left", "sft steps: 100/100, about 00:00:00 left"]  # fmt: skip


def test_a_shard_counter_without_a_total_prints_its_count():
    out = io.StringIO()
    with redirect_stdout(out), ProgressLines(interval_s=0) as progress:
        task = progress.add_task("problems shards")
        progress.advance(task)
    assert out.getvalue() == "problems shards: 1\n"



def test_a_stage_with_too_little_input_stops_with_one_line_and_no_traceback(tmp_path):
    """A teacher that gets every answer wrong (the scripted one, slipping in every solution) leaves compress nothing
    to rewrite: the run stops there with bard's one-line error saying what to change, no traceback (Prefect's logs
    keep it), and what was done is kept."""
    home = tmp_path / "home"
    sets = ["problems.sources=[{kind: arithmetic, size: 20, seed: 0, split: train}]", "teacher.generation.slip_rate=1.0"]
    run = subprocess.run([BARD, "run", "--home", str(home), "--stages", "problems,teacher,compress",
                          *[arg for item in sets for arg in ("--set", item)]], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    said = " ".join(run.stderr.split())  # the console wraps long lines
    assert "error: stage compress failed: compress: no teacher chain to compress: 0 of 20 teacher samples" in said
    assert "bard run --from compress" in said
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert re.search(r"^teacher: \d+ rows in", run.stdout, re.M) and list((home / "artifacts" / "teacher").glob("*/manifest.json"))
