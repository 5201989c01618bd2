"""Built-in sync kinds. Importing this package registers them."""

from freshet.loop.syncs import http_fetch, noop  # noqa: F401
