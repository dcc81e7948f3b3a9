"""Which stages run, in what order, for a config with variants (the ablation profile)."""

import subprocess

from bard_core.config import DEFAULT_CONFIG, load_config
from tasks.graph import ORDER, Plan
from tests.conftest import BARD, ROOT


def test_variants_run_only_the_stages_they_change_right_after_the_base_ones():
    cfg = load_config(DEFAULT_CONFIG.with_name("demo-ablations.yaml"))
    labels = [step.label for step in Plan(cfg).steps(ORDER)]
    assert labels == ["problems", "teacher", "compress", "assemble", "assemble@rl_only", "sft", "sft@rl_only", "grpo",
                      "grpo@additive", "grpo@multiplicative", "grpo@rl_only", "eval", "report"]  # fmt: skip
    steps = {step.label: step.config for step in Plan(cfg).steps(ORDER)}
    assert steps["grpo@additive"].reward.combine == "additive" and steps["grpo"].reward.combine == "multiplicative"
    assert [step.label for step in Plan(load_config()).steps(ORDER)] == ORDER, "no variants: the stages as they are"


def test_dry_run_lists_every_variant_stage(tmp_path):
    out = subprocess.run([BARD, "run", "--config", "configs/demo-ablations.yaml", "--home", str(tmp_path), "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for label in ("grpo@additive", "sft@rl_only", "assemble@rl_only"):
        assert label in out.stdout
