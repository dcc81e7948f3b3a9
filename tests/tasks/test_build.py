"""build_artifact, which every stage's task goes through: reuses an intact artifact, refuses a damaged one by
name, and rebuilds it on refresh."""

import pyarrow as pa
import pytest

from bard_core.config import load_config
from bard_core.errors import BardError
from storage.artifacts import MANIFEST, ArtifactStore, write_table
from tasks.build import build_artifact
from tasks.graph import Plan


def test_a_damaged_artifact_is_refused_then_rebuilt_on_refresh(tmp_path):
    config = load_config(None, [], str(tmp_path))
    step = Plan(config).step("problems")
    made = []

    def make(path):
        made.append(path)
        return {"rows": write_table(path, "rows", pa.table({"a": list(range(30))}), shard_rows=10)}, {}

    def build(refresh=False):
        return build_artifact(step, make, refresh=refresh)

    first = build()
    assert build() == first and len(made) == 1  # intact: reused, not made again
    (ArtifactStore(tmp_path).artifact_dir("problems", step.key) / "rows" / "part-00001.parquet").unlink()
    with pytest.raises(BardError, match=f"problems artifact {step.key} .* is damaged: shard rows/part-00001.parquet is missing; "
                                        "rerun with --refresh problems"):
        build()
    assert len(made) == 1  # not silently rebuilt over
    (ArtifactStore(tmp_path).artifact_dir("problems", step.key) / MANIFEST).write_text("")
    with pytest.raises(BardError, match="manifest.json is unreadable"):
        build()
    rebuilt = build(refresh=True)
    assert len(made) == 2 and rebuilt.rows() == 30 and ArtifactStore(tmp_path).status("problems", step.key).intact
