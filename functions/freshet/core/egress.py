"""Where http_fetch may fetch from, and where a notification route may send: pure
decisions on hosts, addresses and redirects (the connections are made, and checked,
by freshet.gcp.egress). The policy is the pipeline's `http_fetch:` section, which
apply stores in settings/control and run_task and publish_status read from there.

A sync that fetches URLs from a job's params (http_fetch) runs with the function's
service account. The cloud's metadata server (169.254.169.254, metadata.google.internal)
hands that account's access token to anyone who asks from inside, so a fetch that could
be pointed or redirected there would store the token as a snapshot. The rules:

- link-local and metadata addresses are refused unless `allow_link_local`;
- addresses no HTTP server answers on (unspecified, multicast, broadcast) always are;
- private addresses (loopback, RFC 1918, unique-local, CGNAT) are allowed unless
  `allow_private` is off: a pipeline's own sources often live there;
- with `allowed_hosts`, only those hosts (exact, or `*.example.com` for subdomains);
- a redirect to another host is refused unless that host is listed in `allowed_hosts`.

A route takes the same address rules (`for_routes`) but never a link-local address and
no host list: it never needs the metadata server, and alerts go where sources do not.

The addresses are checked where the connection is made, so a name that resolves to a
different address the second time (DNS rebinding) gains nothing.
"""

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from freshet.core.errors import ValidationError

METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})
_LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$|^[0-9a-f:.]+$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_host_pattern(value: object, field: str) -> str:
    """An `allowed_hosts` entry: a host name, `*.domain`, or an IP address."""
    if not isinstance(value, str) or not _HOST_PATTERN.match(value.strip().lower()):
        raise ValidationError(field, "must be a host name such as api.example.com, "
                              "*.example.com for its subdomains, or an IP address")
    return value.strip().lower()


@dataclass(frozen=True)
class EgressPolicy:
    allowed_hosts: tuple[str, ...] = ()  # empty: any host
    allow_private: bool = True
    allow_link_local: bool = False
    # Whether a refusal may suggest allow_link_local (never for a route: no setting
    # lets a route reach a link-local or metadata address).
    hints_link_local: bool = field(default=True, compare=False)

    @classmethod
    def parse(cls, hosts: str, allow_private: bool, allow_link_local: bool,
              field: str = "allowed_hosts") -> "EgressPolicy":
        names = tuple(check_host_pattern(h, f"{field}[{i}]")
                      for i, h in enumerate(h for h in hosts.split(",") if h.strip()))
        return cls(names, allow_private, allow_link_local)

    def to_doc(self) -> dict:
        return {"allowed_hosts": list(self.allowed_hosts), "allow_private": self.allow_private,
                "allow_link_local": self.allow_link_local}

    @classmethod
    def from_doc(cls, doc: dict | None) -> "EgressPolicy":
        """The policy apply stored (settings/control, field `egress`); none stored: the
        defaults, as the pipeline's `http_fetch:` section has them."""
        doc = doc or {}
        return cls(tuple(doc.get("allowed_hosts") or ()), bool(doc.get("allow_private", True)),
                   bool(doc.get("allow_link_local", False)))

    def for_routes(self) -> "EgressPolicy":
        """What a notification route may reach: the same address rules, never a
        link-local or metadata address, and any host (allowed_hosts lists http_fetch's
        sources, not where alerts go)."""
        return EgressPolicy((), self.allow_private, allow_link_local=False,
                            hints_link_local=False)

    def listed(self, host: str) -> bool:
        """`host` is named by `allowed_hosts` (an empty list names nothing)."""
        host = host.lower().rstrip(".")
        return any(host == p or (p.startswith("*.") and host.endswith(p[1:]))
                   for p in self.allowed_hosts)

    def host_refusal(self, host: str) -> str | None:
        """Why a URL naming `host` may not be fetched (before any DNS), or None."""
        name = host.lower().rstrip(".")
        if self.allowed_hosts and not self.listed(name):
            return f"host {name} is not in http_fetch.allowed_hosts"
        if name in METADATA_HOSTS and not self.allow_link_local:
            return self._metadata()
        address = _address(name)
        return None if address is None else self.address_refusal(address)

    def address_refusal(self, address: Address | str) -> str | None:
        """Why a connection to `address` is refused, or None. No address is named in
        the answer: it may be internal, and errors are shown on the status page."""
        address = _unmapped(ipaddress.ip_address(address))
        if address.is_unspecified or address.is_multicast or (
                address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255")):
            return "the host resolves to an address no HTTP server listens on"
        if any(address in net for net in _LINK_LOCAL) or address.is_link_local:
            return None if self.allow_link_local else self._metadata()
        if not self.allow_private and (address.is_private or address.is_loopback
                                       or address in _CGNAT):
            return ("the host resolves to a private address "
                    "(allow with http_fetch.allow_private_addresses)")
        return None

    def _metadata(self) -> str:
        return _METADATA + (_METADATA_HINT if self.hints_link_local else "")

    def redirect_refusal(self, from_url: str, to_url: str) -> str | None:
        """Why following a redirect from `from_url` to `to_url` is refused, or None.
        The target is not named: it may be an internal address."""
        target = urlsplit(to_url)
        if target.scheme not in ("http", "https") or not target.hostname:
            return "a redirect to a URL that is not http(s)"
        if _same_host(urlsplit(from_url), target):
            return None
        if not self.listed(target.hostname):
            return ("a redirect to another host (list that host under "
                    "http_fetch.allowed_hosts to follow it)")
        refusal = self.host_refusal(target.hostname)
        return None if refusal is None else f"a redirect where {refusal}"


_METADATA = "the host is a link-local or metadata address"
_METADATA_HINT = " (allow with http_fetch.allow_link_local)"


def _same_host(a, b) -> bool:
    """Same host and port; http to https on the same host counts (an upgrade)."""
    def port(parts) -> int:
        return parts.port or (443 if parts.scheme == "https" else 80)

    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return False
    return port(a) == port(b) or (a.scheme, b.scheme, port(b)) == ("http", "https", 443)


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _unmapped(address: Address) -> Address:
    """::ffff:169.254.169.254 is 169.254.169.254."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def shown_url(url: str) -> str:
    """The URL for an error text: no credentials, no query (it may carry a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"
