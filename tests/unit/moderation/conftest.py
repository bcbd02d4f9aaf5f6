"""One default bundle per test session: building it is the slow part (~30 s on 2 cores)."""

from pathlib import Path

import pytest

from services.moderation.model import Classifier, ensure_default_bundle


# model_cache (tests/conftest.py) is shared with the end-to-end test: one build per run.
@pytest.fixture(scope="session")
def bundle_dir(model_cache) -> Path:
    return ensure_default_bundle(model_cache)


@pytest.fixture(scope="session")
def classifier(bundle_dir) -> Classifier:
    return Classifier.load(bundle_dir, threads=2)
