from pathlib import Path

import pytest

from bard_core.config import DEFAULT_CONFIG, BardConfig, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_profile_loads_and_sections_have_defaults(tmp_path):
    cfg = load_config()
    assert DEFAULT_CONFIG.name == "demo.yaml"
    assert cfg.problems.sources, "the demo profile names its problem sources"
    empty = load_config(write(tmp_path, ""))
    assert empty == BardConfig(home=empty.home)
    assert empty.budget.template == "Think for at most {budget} tokens."


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "problems:\n  shard_rowz: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "problems.shard_rowz: unknown key" in str(err.value)


def test_wrong_type_names_key_and_expected_type(tmp_path):
    path = write(tmp_path, "problems:\n  shard_rows: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "problems.shard_rows" in str(err.value) and "integer" in str(err.value) and "'many'" in str(err.value)


def test_source_kind_is_checked(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "problems:\n  sources: [{kind: csv, path: x.csv}]\n"))
    assert "problems.sources.0.kind" in str(err.value)
    with pytest.raises(ConfigError, match="needs `path`"):
        load_config(write(tmp_path, "problems:\n  sources: [{kind: jsonl}]\n"))


def test_set_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(
        write(tmp_path, "problems:\n  shard_rows: 10\n"),
        ["problems.shard_rows=7", 'problems.sources=[{"kind":"jsonl","path":"x.jsonl","fields":{"question":"q"}}]',
         "ray.address=auto"],
    )
    assert cfg.problems.shard_rows == 7
    assert cfg.problems.sources[0].fields == {"question": "q"}
    assert cfg.ray.address == "auto"
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["problems.shard_rows"])
    with pytest.raises(ConfigError, match="--set"):
        load_config(None, ["problems.shard_rows=-3"])


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(Exception):
        cfg.problems.shard_rows = 3


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "problems: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_extends_merges_sections_key_by_key_and_replaces_lists(tmp_path):
    (tmp_path / "base.yaml").write_text("sft:\n  learning_rate: 0.5\n  epochs: 3\neval:\n  budgets: [8, 16]\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: ../base.yaml\nsft:\n  epochs: 1\neval:\n  budgets: [32]\n")
    cfg = load_config(child)
    assert (cfg.sft.learning_rate, cfg.sft.epochs, cfg.eval.budgets) == (0.5, 1, [32])
    (tmp_path / "base.yaml").write_text("extends: sub/child.yaml\n")
    with pytest.raises(ConfigError, match="circle"):
        load_config(child)
    child.write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml \(extended by"):
        load_config(child)


def test_the_ablation_profile_extends_the_demo():
    demo, ablations = load_config(), load_config(DEFAULT_CONFIG.with_name("demo-ablations.yaml"))
    assert ablations.sft == demo.sft and ablations.problems == demo.problems
    assert ablations.variants and {m.model for m in ablations.eval.models} >= {"sft", "grpo"}


def test_a_variant_is_the_config_with_its_overrides():
    from bard_core.config import variant_config
    from tasks import assemble, grpo, sft

    cfg = load_config(None, ["variants={additive: {reward.combine: additive}, standard: {sft.kinds: [standard]}}",
                             "eval.models=[{name: a, model: grpo@additive}, {name: s, model: sft@standard}]"])  # fmt: skip
    additive, standard = variant_config(cfg, "additive"), variant_config(cfg, "standard")
    assert additive.reward.combine == "additive" and additive.sft == cfg.sft and not additive.variants
    assert sft.key(additive) == sft.key(cfg) and grpo.key(additive) != grpo.key(cfg), "only what it changes differs"
    assert assemble.key(standard) == assemble.key(cfg) and sft.key(standard) != sft.key(cfg)
    for bad, message in [
        ("variants={a: {eval.limit: 3}}", "eval belongs to the base config"),
        ("variants={a: {reward.combine: mult}}", "variants.a.*reward.combine"),
        ("variants={'a b': {}}", "letters, digits"),
        ("eval.models=[{name: a, model: grpo@x}]", "grpo@x.*none defined"),
        ("eval.models=[{name: a}]", "give `model` or `generation`"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [bad])


def test_ray_resources_per_stage_override_the_stage_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "ray:\n  resources:\n    teacher: {num_gpus: 2}\n    sft: {num_cpus: 8}\n"))
    assert cfg.ray.for_stage("teacher", num_cpus=1, num_gpus=0) == {"num_cpus": 1, "num_gpus": 2}
    assert cfg.ray.for_stage("sft", num_cpus=1, num_gpus=1) == {"num_cpus": 8, "num_gpus": 1}
    assert cfg.ray.for_stage("problems", num_cpus=1) == {"num_cpus": 1}
    with pytest.raises(ConfigError, match="unknown stage teachr"):
        load_config(write(tmp_path, "ray:\n  resources:\n    teachr: {num_gpus: 1}\n"))
    with pytest.raises(ConfigError, match="orchestration.retries"):
        load_config(write(tmp_path, "orchestration: {retries: -1}\n"))
