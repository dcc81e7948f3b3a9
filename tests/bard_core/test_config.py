import os
import subprocess
import sys
from pathlib import Path

import pytest

from bard_core.config import DEFAULT_CONFIG, BardConfig, ConfigError, load_config
from tests.conftest import BARD


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
    from tasks import graph

    cfg = load_config(None, ["variants={additive: {reward.combine: additive}, standard: {sft.kinds: [standard]}}",
                             "eval.models=[{name: a, model: grpo@additive}, {name: s, model: sft@standard}]"])  # fmt: skip
    additive, standard = variant_config(cfg, "additive"), variant_config(cfg, "standard")
    assert additive.reward.combine == "additive" and additive.sft == cfg.sft and not additive.variants
    assert graph.key("sft", additive) == graph.key("sft", cfg) and graph.key("grpo", additive) != graph.key("grpo", cfg), "only what it changes differs"
    assert graph.key("assemble", standard) == graph.key("assemble", cfg) and graph.key("sft", standard) != graph.key("sft", cfg)
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
    from tasks.graph import Plan

    cfg = load_config(write(tmp_path, "ray:\n  resources:\n    teacher: {num_gpus: 2}\n    sft: {num_cpus: 8}\n"))
    assert cfg.ray.for_stage("teacher", num_cpus=1, num_gpus=0) == {"num_cpus": 1, "num_gpus": 2}
    assert cfg.ray.for_stage("sft", num_cpus=1, num_gpus=1) == {"num_cpus": 8, "num_gpus": 1}
    assert cfg.ray.for_stage("problems", num_cpus=1) == {"num_cpus": 1}
    with pytest.raises(ConfigError, match="ray.resources: unknown stage teachr"):  # when a run is planned
        Plan(load_config(write(tmp_path, "ray:\n  resources:\n    teachr: {num_gpus: 1}\n")))
    with pytest.raises(ConfigError, match="orchestration.retries"):
        load_config(write(tmp_path, "orchestration: {retries: -1}\n"))


def test_a_byte_order_mark_opening_the_config_is_not_data(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfproblems:\n  shard_rows: 5\n")
    assert load_config(path).problems.shard_rows == 5


UNREADABLE_CONFIGS = [  # (file name, bytes or None for a directory, what the one error says)
    ("dir.yaml", None, "is a directory, not a config file"),
    ("latin1.yaml", "problems:\n  shard_rows: 5\n# café\n".encode("latin-1"), "not UTF-8 text (line 3"),
    ("syntax.yaml", b"problems:\n  shard_rows: [1, 2\n", "line 3, column 1: not valid YAML: expected ',' or ']'"),
    ("list.yaml", b"- problems\n- sft\n", "the top level must be a mapping of sections, not a list"),
    ("deep.yaml", b"a: " + b"[" * 100_000, "not valid YAML: nested too deeply"),
    ("bigint.yaml", b"sft:\n  seed: " + b"9" * 5000 + b"\n", "Exceeds the limit (4300 digits)"),
    ("extends_dir.yaml", b"extends: .\n", "is a directory, not a config file (extended by"),
    ("extends_list.yaml", b"extends: [a.yaml]\n", "extends: expected the file name of another profile"),
]


@pytest.mark.parametrize("name, content, message", UNREADABLE_CONFIGS, ids=[c[0] for c in UNREADABLE_CONFIGS])
def test_an_unreadable_config_is_one_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.mkdir() if content is None else path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(tmp_path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("name, content, message", [UNREADABLE_CONFIGS[i] for i in (0, 1, 2)],
                         ids=[UNREADABLE_CONFIGS[i][0] for i in (0, 1, 2)])
def test_the_cli_prints_an_unreadable_config_as_one_error_line(tmp_path, name, content, message):
    """`bard config show --config DIR`: `error: ...`, exit 1, no traceback."""
    path = tmp_path / name
    path.mkdir() if content is None else path.write_bytes(content)
    done = subprocess.run([BARD, "config", "show", "--config", str(path)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400"})  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and message in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_set_value_yaml_cannot_hold_is_one_error():
    with pytest.raises(ConfigError, match="--set 'sft.seed=9999"):
        load_config(None, ["sft.seed=" + "9" * 5000])


@pytest.mark.parametrize("module", ["bard_core.generation", "bard_core.config.generation", "bard_core.config.stages",
                                    "bard_core.config.loader", "bard_core.config"])  # fmt: skip
def test_each_config_module_imports_first_in_a_fresh_interpreter(module):
    """The engines' configs live in the config package and the engines import them: no order may hit a cycle."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# Tokenizer agreement (issue 17): budgets must be counted in the student's tokens.
DEMO_TOKENIZER = str(DEFAULT_CONFIG.parent / "demo-tokenizer.json")


@pytest.mark.parametrize("override, setting", [
    ("student.tokenizer=qwen3", "student.tokenizer 'qwen3'"),
    ("compress.generation.tokenizer=qwen3", "compress.generation.tokenizer 'qwen3'"),
    ("eval.models=[{name: reference, generation: {backend: scripted, role: reference, tokenizer: qwen3}}]",
     "eval.models[reference].generation.tokenizer 'qwen3'"),
])  # fmt: skip
def test_tokenizer_settings_that_count_differently_are_one_config_error(override, setting):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert f"budget.tokenizer 'configs/demo-tokenizer.json' and {setting} count tokens differently" in str(err.value)
    assert "budget.tokenizer_mismatch_reason" in str(err.value)


def test_tokenizer_settings_agree_by_what_they_count_not_by_how_they_are_written(tmp_path, tiny_model):
    copy = tmp_path / "copy.json"
    copy.write_bytes(Path(DEMO_TOKENIZER).read_bytes())
    assert load_config(None, [f"student.tokenizer={copy}", f"compress.generation.tokenizer={DEMO_TOKENIZER}"])
    # a student model directory and its own tokenizer.json; a model directory not at hand yet is taken on trust
    assert load_config(None, [f"budget.tokenizer={tiny_model}/tokenizer.json", f"student.model={tiny_model}",
                              "student.tokenizer=null", "compress.generation.tokenizer=null",
                              "compress.generation.role=teacher", "eval.models=[{name: sft, model: sft}]"])  # fmt: skip
    assert load_config(None, ["budget.tokenizer=qwen3", "student.model=/models/not-here", "student.tokenizer=null",
                              "compress.generation.tokenizer=null", "compress.generation.role=teacher",
                              "eval.models=[{name: sft, model: sft}]"])  # fmt: skip
    with pytest.raises(ConfigError, match=f"student.model '{tiny_model}' count tokens differently"):
        load_config(None, [f"student.model={tiny_model}", "student.tokenizer=null"])


def test_a_tokenizer_mismatch_reason_allows_it_and_leaves_the_keys_alone():
    from tasks import graph

    reason = "budget.tokenizer_mismatch_reason=counted in words on purpose"
    allowed = load_config(None, ["student.tokenizer=qwen3", reason])
    assert allowed.budget.tokenizer_mismatch_reason == "counted in words on purpose"
    demo, demo_with_reason = load_config(), load_config(None, [reason])
    assert all(graph.key(name, demo) == graph.key(name, demo_with_reason) for name in graph.STAGES)


def test_the_report_header_shows_why_tokenizers_may_differ(ray_local, tmp_path):
    from tasks import graph

    path = tmp_path / "c.yaml"
    path.write_text(f"""
problems: {{sources: [{{kind: arithmetic, size: 4, seed: 1, split: test}}]}}
budget: {{tokenizer: qwen3, tokenizer_mismatch_reason: "the scripted reference counts in words"}}
eval:
  models: [{{name: reference, generation: {{backend: scripted, role: reference, tokenizer: '{DEMO_TOKENIZER}'}}}}]
  budgets: [16]
ray: {{num_cpus: 1}}
""")
    config = load_config(path, home=str(tmp_path / "home"))
    graph.build("problems", config)
    graph.build("eval", config)
    text = Path(graph.build("report", config).stats["report"]).read_text()
    assert "- **tokenizer mismatch allowed**: the scripted reference counts in words" in text


def _sub_sections(cls, prefix=""):
    """(dotted path, default object) of every sub-section with a default object of its own type, at any depth."""
    from bard_core.config.section import Section

    for name, field in cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Section) and field.annotation is type(default):
            yield prefix + name, default
            yield from _sub_sections(type(default), f"{prefix}{name}.")


def test_a_section_given_in_part_keeps_every_default_it_does_not_set(tmp_path):
    found = dict(_sub_sections(BardConfig))
    assert found["teacher.sampling"].n == 4, "the teacher's documented default, not SamplingParams' n = 1"
    for path, default in found.items():
        first = next(iter(type(default).model_fields))
        data = {first: getattr(default, first)}  # the section with one key set: the rest must be the defaults
        for part in reversed(path.split(".")):
            data = {part: data}
        section = BardConfig.model_validate(data)
        for part in path.split("."):
            section = getattr(section, part)
        assert section == default, path
    cfg = load_config(write(tmp_path, "teacher:\n  sampling: {temperature: 0.6, max_tokens: 400}\n"))
    assert (cfg.teacher.sampling.n, cfg.teacher.sampling.temperature, cfg.teacher.sampling.max_tokens) == (4, 0.6, 400)
