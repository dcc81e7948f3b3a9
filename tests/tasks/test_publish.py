"""The progress artifact a stage keeps in Prefect moves while the stage runs, not only at its end."""

import time

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.sorting import ArtifactSort

from tasks.publish import progress_reporter


def test_the_progress_artifact_is_updated_mid_run(prefect_api):
    @flow
    def chunks() -> list[float]:
        """20 chunks, one every 0.1 s or more, reported at most every second: what the API holds after each report."""
        report = progress_reporter("publish-test", interval_s=1.0)
        seen = []
        with get_client(sync_client=True) as client:
            for done in range(21):
                report(done, 20)
                (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key={"any_": ["publish-test-progress"]}),
                                                    sort=ArtifactSort.CREATED_DESC, limit=1)  # fmt: skip
                seen.append(artifact.data)
                time.sleep(0.1)
        return seen

    seen = chunks()
    assert seen[0] == 0.0 and seen[-1] == 100.0
    assert set(seen) - {0.0, 100.0}, f"no update between the first report and the last: {seen}"
    assert len(set(seen)) < len(seen), f"an update at every report, not at most every second: {seen}"
