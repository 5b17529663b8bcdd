"""Fixtures shared by the test modules."""

import pytest

from qgpt import data


@pytest.fixture(scope="module")
def names_file(tmp_path_factory):
    """Every 100th name of the default set: 300 names, about 30 of them validation."""
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(data.DEFAULT_DATA.read_text().splitlines()[::100]) + "\n")
    return path
