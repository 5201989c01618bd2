"""Where http_fetch may fetch from: addresses, hosts and redirects, as pure decisions."""

import pytest

from freshet.core.egress import EgressPolicy, check_host_pattern, shown_url
from freshet.core.errors import ValidationError

DEFAULT = EgressPolicy()
STRICT = EgressPolicy(("api.example.com", "*.example.org"), allow_private=False)


@pytest.mark.parametrize("address", [
    "169.254.169.254", "169.254.0.1", "169.254.255.255", "fe80::1", "fe80::abcd:1",
    "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0", "::", "224.0.0.1", "ff02::1",
    "255.255.255.255",
])
def test_link_local_metadata_and_unusable_addresses_are_refused_by_default(address):
    assert DEFAULT.address_refusal(address) is not None


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254"])
def test_link_local_addresses_are_allowed_only_when_the_pipeline_says_so(address):
    assert EgressPolicy(allow_link_local=True).address_refusal(address) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                                     "100.64.0.1", "::1", "fd12:3456::1", "::ffff:10.0.0.1"])
def test_private_addresses_are_allowed_unless_turned_off(address):
    assert DEFAULT.address_refusal(address) is None
    assert "private address" in STRICT.address_refusal(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert DEFAULT.address_refusal(address) is None
    assert STRICT.address_refusal(address) is None


@pytest.mark.parametrize(("host", "ok"), [
    ("api.example.com", True), ("API.Example.COM.", True), ("x.example.org", True),
    ("a.b.example.org", True), ("example.org", False), ("evilexample.org", False),
    ("api.example.com.evil.net", False), ("169.254.169.254", False),
])
def test_with_an_allowlist_only_listed_hosts_and_subdomains_pass(host, ok):
    assert (STRICT.host_refusal(host) is None) is ok


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.google.internal.",
                                  "metadata", "metadata.goog", "169.254.169.254", "[fe80::1]"])
def test_metadata_names_are_refused_before_any_lookup(host):
    assert "metadata" in DEFAULT.host_refusal(host)


@pytest.mark.parametrize(("start", "target", "ok"), [
    ("https://a.example/x", "https://a.example/y", True),
    ("http://a.example/x", "https://a.example/y", True),  # an upgrade on the same host
    ("https://a.example/x", "http://a.example/y", False),  # a downgrade is another origin
    ("https://a.example/x", "https://a.example:8443/y", False),
    ("https://a.example/x", "https://b.example/y", False),
    ("https://a.example/x", "https://A.EXAMPLE/y", True),
    ("https://a.example/x", "ftp://a.example/y", False),
    ("https://a.example/x", "https://169.254.169.254/y", False),
])
def test_redirects_stay_on_the_host_by_default(start, target, ok):
    assert (DEFAULT.redirect_refusal(start, target) is None) is ok


def test_a_redirect_to_a_listed_host_is_followed_unless_its_address_is_refused():
    policy = EgressPolicy(("a.example", "b.example", "169.254.169.254"))
    assert policy.redirect_refusal("https://a.example/", "https://b.example/") is None
    refusal = policy.redirect_refusal("https://a.example/", "http://169.254.169.254/")
    assert "metadata" in refusal and "169.254" not in refusal


@pytest.mark.parametrize("bad", ["", "a b", "http://x", "x/y", "*", "*.", 42, None])
def test_allowlist_entries_must_be_hosts(bad):
    with pytest.raises(ValidationError):
        check_host_pattern(bad, "allowed_hosts[0]")


def test_urls_in_errors_lose_credentials_and_query():
    assert shown_url("https://user:pw@api.example.com:8443/v1/x?token=abc#f") == \
        "https://api.example.com:8443/v1/x"
    assert shown_url("http://[::1]:99999/x") == "http://[::1]/x"


def test_the_policy_apply_stores_reads_back_the_same_and_nothing_stored_is_the_default():
    policy = EgressPolicy(("api.example.com", "*.example.org"), False, True)
    assert EgressPolicy.from_doc(policy.to_doc()) == policy
    assert EgressPolicy.from_doc(None) == EgressPolicy.from_doc({}) == EgressPolicy()


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254",
                                     "fd00:ec2::254", "0.0.0.0", "224.0.0.1"])
def test_a_route_never_reaches_a_link_local_address_whatever_http_fetch_may(address):
    routes = EgressPolicy(("only.example.com",), allow_link_local=True).for_routes()
    refusal = routes.address_refusal(address)
    assert refusal is not None and "allow_link_local" not in refusal
    assert routes.host_refusal("metadata.google.internal") is not None


def test_a_route_keeps_the_private_address_rule_and_ignores_the_host_list():
    assert EgressPolicy(allow_private=False).for_routes().address_refusal("10.0.0.1")
    assert EgressPolicy(allow_private=True).for_routes().address_refusal("10.0.0.1") is None
    assert EgressPolicy(("api.example.com",)).for_routes().host_refusal("hooks.slack.com") \
        is None
