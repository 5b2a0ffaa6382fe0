"""URL trimming: what a URL may become before it is stored."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_jobs.trim import (
    BROWSER_PAGE,
    FIXED_LABELS,
    INLINE_DATA,
    INVALID_URL,
    LOCAL_FILE,
    OTHER_SCHEME,
    multi_app_sites,
    site_of,
)


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://www.Example.com:443/a/b?q=secret#frag", "example.com"),
        ("http://user:password@github.com/alice/repo", "github.com"),
        ("https://docs.python.org/3/library/urllib.html", "docs.python.org"),
        ("https://EXAMPLE.com./x", "example.com"),
        ("example.com/path?q=1", "example.com"),
        ("https://www.google.com/maps/place/Somewhere", "google.com/maps"),
        ("https://www.google.com/MAPS", "google.com/maps"),
        ("https://google.com/alice-smith", "google.com"),
        ("https://google.com/", "google.com"),
        ("https://www.google.com:8443/search?q=my+diagnosis", "google.com/search"),
    ],
)
def test_web_urls_become_their_site(url, site):
    assert site_of(url) == site


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("http://localhost:3000/admin?x=1", "localhost:3000"),
        ("localhost:8501/page", "localhost:8501"),
        ("http://localhost/", "localhost"),
        ("http://127.0.0.1:8000/a", "127.0.0.1:8000"),
        ("http://[::1]:3000/", "[::1]:3000"),
        ("http://[2001:db8:0:0::1]/x", "[2001:db8::1]"),
        ("http://10.0.0.7/", "10.0.0.7"),
    ],
)
def test_localhost_and_ip_literals_keep_their_port(url, site):
    assert site_of(url) == site


def test_ports_of_named_hosts_are_dropped():
    assert site_of("https://intranet.example.org:8443/wiki") == "intranet.example.org"


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("file:///home/alice/diary.txt", LOCAL_FILE),
        ("chrome://settings/passwords", BROWSER_PAGE),
        ("about:blank", BROWSER_PAGE),
        ("moz-extension://abc/popup.html", BROWSER_PAGE),
        ("data:text/html,<b>private</b>", INLINE_DATA),
        ("mailto:alice@example.com", OTHER_SCHEME),
        ("ftp://files.example.com/x", OTHER_SCHEME),
    ],
)
def test_non_web_urls_become_fixed_labels(url, label):
    assert site_of(url) == label


def test_idn_hosts_are_normalised_to_one_form():
    assert site_of("https://xn--bcher-kva.example/x") == site_of("https://BÜCHER.example/y") == "bücher.example"


@pytest.mark.parametrize("url", ["http://", "https://a b.com/", "https://ex.com:99999/", "https://x" * 5000])
def test_malformed_urls_become_the_invalid_label(url):
    assert site_of(url) == INVALID_URL


@pytest.mark.parametrize("url", [None, "", "   "])
def test_no_url_means_no_site(url):
    assert site_of(url) is None


def test_allow_list_is_a_data_file_with_no_open_ended_hosts():
    sites = multi_app_sites()
    assert "google.com" in sites and "maps" in sites["google.com"]
    assert sites["github.com"] == frozenset()  # a first segment there is a person or an organisation


_SITE = re.compile(r"^(\[[0-9a-f:.]+\]|[^\s/?#@:\[\]]+)(:\d{1,5})?(/[a-z0-9-]+)?$")


def _allowed(site: str) -> bool:
    if site in FIXED_LABELS:
        return True
    if not _SITE.match(site):
        return False
    if "/" in site:
        host, segment = site.split("/", 1)
        return segment in multi_app_sites().get(host, frozenset())
    return True


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=300))
def test_any_string_yields_no_query_fragment_userinfo_or_unlisted_path(raw):
    site = site_of(raw)
    assert site is None or _allowed(site), site


_url_parts = st.builds(
    lambda scheme, user, host, port, path, query, frag: f"{scheme}://{user}{host}{port}/{path}{query}{frag}",
    st.sampled_from(["http", "https", "HTTP", "wss"]),
    st.sampled_from(["", "alice@", "alice:s3cret@", "a%40b@"]),
    st.sampled_from(["www.google.com", "github.com", "example.org", "localhost", "127.0.0.1", "[::1]", "ÉX.com"]),
    st.sampled_from(["", ":80", ":8080"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["", "?q=secret", "?token=abc&x=1"]),
    st.sampled_from(["", "#section", "#access_token=xyz"]),
)


@settings(max_examples=1500, deadline=None)
@given(_url_parts)
def test_structured_urls_never_leak_secrets_into_the_site(url):
    site = site_of(url)
    assert site is not None and _allowed(site), site
    for secret in ("secret", "s3cret", "abc", "xyz", "alice", "section"):
        assert secret not in site
