"""Shared paths for the Python package's tests. CTest sets them (tests/CMakeLists.txt); run by hand with
PYTHONPATH=build/python GALVANI_CLI=build/host/galvani /usr/bin/python3 -m pytest tests/python."""
import os
import pathlib

import pytest

SOURCE = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = SOURCE / "docs" / "examples"
FIXTURES = SOURCE / "tests" / "fixtures" / "models"


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("GALVANI_CLI")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("GALVANI_CLI must name the built galvani executable (CTest sets it)")
    return path
