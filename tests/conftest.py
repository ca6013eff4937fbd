"""Shared fixtures: the golden vectors of the paper's code (tests/fixtures/golden, see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from restorevar.models.presets import get_preset
from restorevar.models.restorevar.convert import convert_official
from restorevar.models.restorevar.model import RestoreVAR

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


def assert_golden(got: torch.Tensor, expected: torch.Tensor, c: float) -> None:
    """The golden README's rule: atol = c·max(1, max|expected|), rtol = 0."""
    atol = c * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(got.float(), expected.float(), rtol=0, atol=atol)


@pytest.fixture(scope="session")
def golden_vqvae():
    d = GOLDEN / "vqvae_tiny"
    return (
        load_file(d / "state_dict.safetensors"),
        load_file(d / "input.safetensors"),
        load_file(d / "expected.safetensors"),
    )


@pytest.fixture(scope="session")
def golden_restorevar():
    d = GOLDEN / "restorevar_tiny"
    return load_file(d / "inputs.safetensors"), load_file(d / "expected.safetensors")


@pytest.fixture(scope="session")
def converted_tiny():
    """The golden official files converted to our modules (architecture inferred from the files)."""
    return convert_official(
        GOLDEN / "vqvae_tiny" / "state_dict.safetensors", GOLDEN / "restorevar_tiny" / "restorevar.pth", refiner_heads=2
    )


@pytest.fixture(scope="session")
def golden_model(converted_tiny) -> RestoreVAR:
    model = RestoreVAR(converted_tiny.config)
    for name, state in converted_tiny.states.items():
        getattr(model, name).load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture
def tiny_config():
    return get_preset("tiny")


@pytest.fixture(scope="session")
def golden_model_dir(golden_model, tmp_path_factory):
    """The golden model saved as a model folder, for CLI and from_pretrained tests."""
    directory = tmp_path_factory.mktemp("golden_model")
    golden_model.save_pretrained(directory)
    return directory
