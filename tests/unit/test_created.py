"""The answer of every create: new or already there, and true only when new."""

from freshet.core.created import Created


def test_only_a_new_document_is_a_true_answer():
    assert Created.NEW and Created.NEW.new
    assert not Created.EXISTS and not Created.EXISTS.new
    assert [c for c in (Created.NEW, Created.EXISTS) if c] == [Created.NEW]
