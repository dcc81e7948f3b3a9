import pytest

from tests.bard_core.generation.local_models import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny Qwen3 model directory whose chat template opens the assistant turn plainly."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def tiny_think_model(tmp_path_factory) -> str:
    """The same model, but its chat template prefills "<think>\\n" as DeepSeek-R1's does."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-think"), think_prefill=True))
