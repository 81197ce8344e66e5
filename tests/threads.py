"""One torch thread for the tests of small models: they run fastest on one, and two collapse when the
cores are shared. A conftest that wants it imports the fixture (``from tests.threads import _one_torch_thread``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
