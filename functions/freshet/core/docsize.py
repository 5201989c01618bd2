"""Document sizes as Firestore counts them, and documents split into pages that each fit.

Firestore refuses a document larger than 1 MiB (1,048,576 bytes). Its storage size is:
a string's UTF-8 bytes + 1; 8 bytes for an integer, a float or a timestamp; 1 for a
boolean or null; a map's fields (name + 1, plus value) summed; an array's values summed;
a document's name (each path segment + 1, plus 16) + its fields + 32.
(https://cloud.google.com/firestore/docs/storage-size)

A document whose lists grow with the pipeline (every dataset's last state, every job
that failed) is written as a head plus pages: `paginate` splits its lists across pages
of at most PAGE_BYTES, `join_pages` puts them back in order.
"""

from collections.abc import Iterable, Iterator
from datetime import date, datetime

MAX_DOC_BYTES = 1_048_576
PAGE_BYTES = 900_000  # a page's lists at most: the rest of the 1 MiB is names and margin


def value_size(value: object) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime | date):
        return 8
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(value_size(str(k)) + value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(value_size(v) for v in value)
    return value_size(str(value))


def doc_size(path: str, data: dict) -> int:
    """`path` is 'collection/doc_id' (or deeper)."""
    name = sum(len(part.encode("utf-8")) + 1 for part in path.split("/")) + 16
    return name + value_size(data) + 32


def paginate(lists: dict[str, list], budget: int = PAGE_BYTES) -> list[dict[str, list]]:
    """The lists, in order, across as few pages as keep each page's items within
    `budget` bytes. An item larger than `budget` raises ValueError: every item Freshet
    pages is bounded far below it, so that would be a bug, not data."""
    pages: list[dict[str, list]] = [{}]
    used = 0
    for name, items in lists.items():
        for item in items:
            size = value_size(item)
            if size > budget:
                raise ValueError(f"one {name} entry is {size} bytes; a page holds {budget}")
            if used + size > budget:
                pages.append({})
                used = 0
            pages[-1].setdefault(name, []).append(item)
            used += size
    return pages


def join_pages(pages: Iterable[dict]) -> Iterator[tuple[str, list]]:
    """(name, items) of every list in `pages`, in page order: concatenate per name."""
    for page in pages:
        for name, items in page.items():
            if isinstance(items, list):
                yield name, items
