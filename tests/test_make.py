"""The Makefile's targets that CI runs."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_slow_runs_the_slow_tests_and_an_empty_selection_is_no_failure():
    # -o setup: the virtualenv is this one, never rebuilt; --collect-only: the slow tests are listed, not run
    def make_test_slow(args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "-o", "setup", "test-slow", f"PYTEST_ARGS={args}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    listed = make_test_slow("--collect-only")
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    assert "test_the_ablation_profile_adds_only_its_variants" in listed.stdout  # marked slow: it is selected
    assert "test_the_prefect_ui_in_a_browser_shows_deployments_runs_and_the_report" in listed.stdout
    assert "test_the_demo_profile_runs_every_stage" not in listed.stdout  # not marked: `make test` runs it
    empty = make_test_slow("--collect-only -k no_test_has_this_name")  # pytest's exit 5: nothing selected
    assert empty.returncode == 0, empty.stdout[-2000:] + empty.stderr[-2000:]
    failing = make_test_slow("--no-such-option")
    assert failing.returncode != 0, "a pytest error is still a failure"
