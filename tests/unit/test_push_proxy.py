"""Which proxy the agent uses for the census service, and what service URLs it accepts (pure functions)."""

from __future__ import annotations

import base64

import pytest

from census_agent.push import Endpoint, parse_endpoint, proxy_for

HTTPS_SERVICE = Endpoint("https", "census.example.cn", 443)
HTTP_SERVICE = Endpoint("http", "10.0.0.5", 8000)


def test_a_service_url_gives_scheme_host_default_port_and_path_prefix() -> None:
    """The port defaults by scheme, a trailing slash on the prefix is dropped, IPv6 hosts keep their brackets."""
    assert parse_endpoint("https://census.example.cn/suanli/") == Endpoint("https", "census.example.cn", 443, "/suanli")
    assert parse_endpoint("http://127.0.0.1:8000") == Endpoint("http", "127.0.0.1", 8000, "")
    assert parse_endpoint("http://[::1]:8000").netloc == "[::1]:8000"


@pytest.mark.parametrize("url", ["ftp://census.example.cn", "census.example.cn", "http://", "http://host:99999"])
def test_a_url_that_is_not_http_or_https_with_a_host_and_port_is_refused_by_name(url: str) -> None:
    """Scheme, host and port are checked, and the error names what was wrong."""
    with pytest.raises(ValueError, match="server URL"):
        parse_endpoint(url)


def test_without_proxy_variables_the_service_is_reached_directly() -> None:
    """An empty environment (and one with only unrelated variables) names no proxy."""
    assert proxy_for(HTTPS_SERVICE, {}) is None
    assert proxy_for(HTTPS_SERVICE, {"HTTP_PROXY": "http://proxy:3128"}) is None  # http's proxy, not https's


def test_https_proxy_is_used_for_an_https_service_and_http_proxy_for_an_http_one() -> None:
    """Each scheme has its own variable; ALL_PROXY serves both when its own is unset; no scheme means http://."""
    env = {"HTTPS_PROXY": "http://tls-proxy:3128", "HTTP_PROXY": "plain-proxy:8080"}
    assert proxy_for(HTTPS_SERVICE, env) == Endpoint("http", "tls-proxy", 3128, "")
    assert proxy_for(HTTP_SERVICE, env) == Endpoint("http", "plain-proxy", 8080, "")
    assert proxy_for(HTTP_SERVICE, {"ALL_PROXY": "http://any:1080"}) == Endpoint("http", "any", 1080, "")


def test_the_lower_case_variable_wins_and_http_proxy_is_ignored_in_a_cgi_environment() -> None:
    """curl's and Python's rule: lower case first; upper-case HTTP_PROXY may be a request header under CGI."""
    env = {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"}
    assert proxy_for(HTTPS_SERVICE, env) == Endpoint("http", "lower", 1, "")
    assert proxy_for(HTTP_SERVICE, {"HTTP_PROXY": "http://evil:3", "REQUEST_METHOD": "GET"}) is None


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("*", True),
        ("census.example.cn", True),
        (".example.cn", True),
        ("example.cn", True),
        ("xample.cn", False),  # a suffix counts only at a dot
        ("census.example.cn:443", True),
        ("census.example.cn:8443", False),
        ("other.cn, census.example.cn ", True),
        ("", False),
    ],
)
def test_no_proxy_names_hosts_domains_and_ports_reached_directly(no_proxy: str, bypassed: bool) -> None:
    """NO_PROXY entries match the whole host, a domain suffix at a dot, or a host with its port; * matches all."""
    proxy = proxy_for(HTTPS_SERVICE, {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy})
    assert (proxy is None) is bypassed


def test_a_proxy_url_with_user_and_password_gives_a_basic_proxy_authorization() -> None:
    """Percent-escapes in the credentials are decoded before encoding, as the proxy expects."""
    proxy = proxy_for(HTTPS_SERVICE, {"HTTPS_PROXY": "http://ops%40city:p%3Ass@proxy:3128"})
    assert proxy is not None
    assert proxy.authorization == "Basic " + base64.b64encode(b"ops@city:p:ss").decode()


def test_a_malformed_proxy_variable_is_an_error_naming_the_proxy() -> None:
    """A proxy URL with another scheme is refused, not silently ignored (the agent would otherwise go direct)."""
    with pytest.raises(ValueError, match="proxy URL"):
        proxy_for(HTTPS_SERVICE, {"HTTPS_PROXY": "ftp://proxy:21"})
