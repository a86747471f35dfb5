"""`pytest --device cuda` runs the tests that take the `device` fixture on a GPU (default: cpu, as in CI)."""

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"), help="where device-aware tests run")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device the test's models and tensors go on (`--device`)."""
    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.exit("--device cuda, but torch sees no CUDA device", returncode=2)
    return torch.device(name)
