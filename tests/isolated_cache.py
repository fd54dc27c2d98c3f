"""A fixture for test modules that load xreid models: compiled copies (``xreid.models.model_cache``)
go to the test session's temporary folder, never the user's ``~/.cache/xreid/models``.

Use with ``from isolated_cache import isolated_model_cache  # noqa: F401`` (autouse, per module).
"""

import pytest


@pytest.fixture(autouse=True, scope="module")
def isolated_model_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XREID_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "model-cache"))
        yield
