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


@pytest.fixture
def memory_store():
    """The in-memory store (freshet.gcp.memory), for tests of the loop's logic that do
    not test Firestore's own semantics (contention, indexes, document limits): the
    contract suite (tests/integration/test_store_contract.py) holds it to the same
    answers as the Firestore adapter."""
    from freshet.gcp.memory import MemoryStore

    return MemoryStore()
