import pytest


@pytest.fixture
def msgs():
    """A one-message generation prompt."""
    return [{"role": "user", "content": "Prove that the sum of two even integers is even. "
                                        "Answer with ## Solution and ## Self Evaluation."}]
