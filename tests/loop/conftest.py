"""Fixtures shared by the loop tests."""

import pytest

from freshet.loop import registry
from tests.loop.helpers import Probe


@pytest.fixture
def probe():
    """The `slot_probe` sync kind, recording what each run was given."""
    made = Probe()
    registry.sync("slot_probe")(made)
    yield made
    registry.unregister("slot_probe")
