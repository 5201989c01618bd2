"""The one outbound HTTP client for addresses a pipeline names: http_fetch's URLs and
notification routes' webhooks. Not a Google service, but an adapter all the same: it is
the only place either of them opens a connection, and both the loop and the status
page may import it.

Every connection (each redirect hop, each retry) is checked against the policy
(freshet.core.egress) once connected, before a byte is sent, on the socket's own peer
address: a name that resolves differently the second time (DNS rebinding) gains
nothing. No proxy, .netrc or CA bundle comes from the environment (`trust_env` off):
the peer checked is the server itself, and a secret URL never goes to a proxy. No
redirect is followed here: a caller that follows them (http_fetch, on its own host)
decides each hop with `EgressPolicy.redirect_refusal`. The whole exchange runs within a
deadline: at the deadline its sockets are shut, so a server that trickles bytes, or a
name that never resolves, cannot hold the caller past it.
"""

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from freshet.core.egress import EgressPolicy

HEARTBEAT_EVERY_S = 5.0
T = TypeVar("T")


class RefusedAddress(Exception):
    """The connection's peer is an address the policy refuses; the text says why and
    names no address. Not an OSError, so neither urllib3 nor requests retries or
    rewraps it."""


class TimedOut(Exception):
    """No complete exchange within the deadline."""


def within_deadline(policy: EgressPolicy, work: Callable[[requests.Session], T], *,
                    deadline_s: float, heartbeat: Callable[[], object] = lambda: None) -> T:
    """`work(session)` with a guarded session, in a worker thread, within `deadline_s`.
    This thread calls `heartbeat` every few seconds while it waits (a sync renews its
    lease); at the deadline it shuts the worker's sockets and raises TimedOut."""
    exchange = _Exchange(policy, work)
    worker = threading.Thread(target=exchange.run, name="egress", daemon=True)
    started = time.monotonic()
    worker.start()
    while True:
        left = deadline_s - (time.monotonic() - started)
        worker.join(min(HEARTBEAT_EVERY_S, max(left, 0)))
        if not worker.is_alive():
            return exchange.result()
        if left <= 0:
            exchange.abort()
            raise TimedOut(f"no complete answer within {deadline_s:.0f} s")
        try:
            heartbeat()
        except BaseException:
            exchange.abort()
            raise


def describe(exc: BaseException) -> str | None:
    """A connection-level failure in Freshet's words (never the library's, which name
    resolved addresses and pool settings); None for anything else."""
    if isinstance(exc, RefusedAddress):
        return f"refused: {exc}"
    if isinstance(exc, TimedOut):
        return str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect"
    if isinstance(exc, requests.RequestException | OSError):
        return f"request failed ({type(exc).__name__})"
    return None


@dataclass
class _Exchange(Generic[T]):
    policy: EgressPolicy
    work: Callable[[requests.Session], T]
    sockets: list = field(default_factory=list)
    aborted: bool = False
    outcome: T | None = None
    error: BaseException | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        try:
            with guarded_session(self.policy, self._opened) as session:
                self.outcome = self.work(session)
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.outcome

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self.sockets.append(sock)
            if self.aborted:
                shut(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            for sock in self.sockets:
                shut(sock)


def shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv; close() alone may not


def guarded_session(policy: EgressPolicy, on_open=lambda sock: None) -> requests.Session:
    """A requests session whose every connection is checked against `policy` once
    connected, before a byte is sent; nothing taken from the environment."""
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter(policy, on_open)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: EgressPolicy, on_open):
        self._pools = _pool_classes(policy, on_open)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


def _pool_classes(policy: EgressPolicy, on_open) -> dict:
    def checked(sock: socket.socket) -> socket.socket:
        on_open(sock)
        refusal = policy.address_refusal(sock.getpeername()[0])
        if refusal:
            shut(sock)
            sock.close()
            raise RefusedAddress(refusal)
        return sock

    class Connection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn())

    class SecureConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn())

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    return {"http": Pool, "https": SecurePool}
