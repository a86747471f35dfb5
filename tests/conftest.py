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


@pytest.fixture(autouse=True)
def llm_auto_device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """device = auto in an LLM trainer means `--device` here: the CPU by default (as in CI, even on a GPU machine),
    the GPU with --device cuda. Env agents keep their own auto (the CPU)."""
    from plainrl.llm.config import TaskConfig

    monkeypatch.setattr(TaskConfig, "AUTO_DEVICE", request.config.getoption("--device"))
