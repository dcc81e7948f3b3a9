"""The Makefile's targets that CI runs."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_slow_succeeds_when_no_test_is_marked_slow():
    # -o setup: the virtualenv is this one, never rebuilt; --collect-only: the slow tests, if any, are listed, not run
    done = subprocess.run(["make", "-o", "setup", "test-slow", "PYTEST_ARGS=--collect-only"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    failing = subprocess.run(["make", "-o", "setup", "test-slow", "PYTEST_ARGS=--no-such-option"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert failing.returncode != 0, "a pytest error is still a failure"
