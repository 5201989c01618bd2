"""Property-based fuzzing of notification routes (issue 20, section 3): whatever URL a
route names and whatever its receiver answers, a route never reaches a link-local or
metadata address, never follows a redirect, and what Freshet stores and shows is its
own words: never the receiver's body, never a part of the URL."""

import ipaddress
import re
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshet.core.alerts import Message, Reference, RouteSpec, RouteType
from freshet.core.egress import EgressPolicy
from freshet.core.errors import ValidationError
from freshet.status.notify import DeliveryError, make_route, send_message
from tests.status.builders import NOW, model
from tests.status.webhook_server import WebhookReceiver

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
METADATA_V4 = ipaddress.ip_network("169.254.0.0/16")
HOSTS = st.sampled_from([
    "169.254.169.254", "169.254.0.1", "[fe80::1]", "[fe80::1%25eth0]", "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]", "metadata.google.internal", "METADATA.GOOGLE.INTERNAL.", "metadata",
    "metadata.goog", "0.0.0.0", "[::]", "224.0.0.1", "255.255.255.255", "[fd00:ec2::254]",
    "127.0.0.1", "10.0.0.1", "[::1]", "hooks.slack.com", "example.com", "2852039166",
])
PORTS = st.sampled_from(["", ":80", ":8085", ":443", ":65535", ":99999", ":0", ":x"])
PATHS = st.text(alphabet="abcXYZ019/-_%?=&", max_size=30)


def _link_local(host: str) -> bool:
    name = host.strip("[]").split("%")[0].lower().rstrip(".")
    if name in {"metadata", "metadata.google.internal", "metadata.goog"}:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_link_local or address in METADATA_V4 or address.is_unspecified \
        or address.is_multicast or str(address) == "fd00:ec2::254"


@FUZZ
@given(host=HOSTS, port=PORTS, path=PATHS, private=st.booleans(), link_local=st.booleans())
def test_a_route_to_any_address_is_refused_at_apply_unless_it_may_be_reached(
        host, port, path, private, link_local):
    url = f"http://{host}{port}/{path}"
    policy = EgressPolicy(allow_private=private, allow_link_local=link_local)
    try:
        spec = make_route({"id": "r", "url": url}, "routes[0]", policy)
    except ValidationError as exc:
        assert exc.field.startswith("routes[0]")
        return
    assert not _link_local(urlsplit(spec.url.value).hostname or "")


@FUZZ
@given(host=HOSTS, path=PATHS)
def test_a_route_to_a_link_local_address_is_never_sent(host, path):
    url = f"http://{host}/{path}"
    if not _link_local(host):
        return
    spec = RouteSpec("r", RouteType.SLACK, Reference(env="URL"))
    message = Message("m1", NOW, ())
    with pytest.raises(DeliveryError, match="^refused: |^the route's URL|^cannot connect$"):
        send_message(spec, message, model(), {"URL": url},
                     EgressPolicy(allow_link_local=True))


ANSWERS = st.tuples(
    st.integers(min_value=200, max_value=599),
    st.text(max_size=300),
    st.sampled_from(["", "http://169.254.169.254/x", "https://elsewhere.example/", "/same"]))
OWN_WORDS = re.compile(r"^HTTP \d{3}(: a redirect, not followed)?$")


@pytest.fixture(scope="module")
def receiver():
    with WebhookReceiver() as r:
        yield r


@FUZZ
@given(answer=ANSWERS, secret_path=st.text(alphabet="ABCDEFGHJK0123456789", min_size=8,
                                           max_size=16))
def test_whatever_a_receiver_answers_the_stored_error_is_our_own_words(receiver, answer,
                                                                       secret_path):
    status, body, location = answer
    receiver.answer = (status, {"Location": location} if location else {},
                       f"{body} {secret_path}".encode())
    url = receiver.url.replace("/hook", f"/hook/{secret_path}?k={secret_path}")
    spec = RouteSpec("r", RouteType.SLACK, Reference(value=url))
    before = receiver.attempts
    try:
        send_message(spec, Message("m1", NOW, ()), model(), {})
    except DeliveryError as exc:
        text = str(exc)
        assert OWN_WORDS.match(text), text
        assert secret_path not in text and (len(body.strip()) < 4 or body not in text)
        assert status >= 300
    else:
        assert 200 <= status < 300
    assert receiver.attempts == before + 1  # one try, no redirect followed
