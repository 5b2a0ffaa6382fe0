"""URL trimming: what a URL may become before it is stored."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_jobs.trim import (
    _PUBLIC_SUFFIXES,
    BROWSER_PAGE,
    FIXED_LABELS,
    INLINE_DATA,
    INVALID_URL,
    LOCAL_FILE,
    OTHER_SCHEME,
    _registrable_domain,
    allow_listed_segments,
    multi_app_sites,
    site_of,
)

REPO = Path(__file__).resolve().parents[2]


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


# --- the public suffix list -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://www.example.co.uk/x", "example.co.uk"),
        ("https://www.co.uk/x", "www.co.uk"),  # "co.uk" is a public suffix, nobody's site
        ("https://www.www.example.com/", "example.com"),
        ("https://www.github.io/", "www.github.io"),
        ("https://www.alice.github.io/notes", "alice.github.io"),
        ("https://www.ck/", "www.ck"),  # "!www.ck" in the list: www.ck is itself the registrable name
        ("https://www.公司.cn/", "www.公司.cn"),
        ("https://www.example.公司.cn/", "example.公司.cn"),
        ("http://www.wiki.corp.internal/", "wiki.corp.internal"),  # unlisted suffix: the default rule "*"
        ("http://www.intranet/", "www.intranet"),
        ("https://ｗｗｗ.example.com/", "example.com"),
    ],
)
def test_www_is_stripped_only_when_a_registrable_name_remains(url, site):
    assert site_of(url) == site


@pytest.mark.parametrize("host", ["co.uk", "github.io", "blogspot.com", "公司.cn", "com"])
def test_a_host_that_is_only_a_public_suffix_is_shown_as_itself(host):
    assert site_of(f"https://{host}/anything") == host


def test_sites_under_a_private_suffix_stay_whole_hosts():
    # Each name under github.io is a different person's site; none collapses into "github.io".
    assert site_of("https://alice.github.io/diary/2024") == "alice.github.io"
    assert site_of("https://bob.github.io/") == "bob.github.io"
    assert site_of("https://waiterrant.blogspot.com/p/about.html") == "waiterrant.blogspot.com"


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://acme.atlassian.net/wiki/spaces/ENG/pages/1", "acme.atlassian.net/wiki"),
        ("https://acme.atlassian.net/browse/ENG-42", "acme.atlassian.net/browse"),
        ("https://eu.acme.atlassian.net/JIRA/x", "eu.acme.atlassian.net/jira"),
        ("https://acme.atlassian.net/alice-smith", "acme.atlassian.net"),
        ("https://atlassian.net/wiki", "atlassian.net"),  # "*." is for subdomains, not the domain itself
        ("https://www.atlassian.net/wiki", "atlassian.net"),
        ("https://acme-my.sharepoint.com/personal/alice_acme_com/Documents", "acme-my.sharepoint.com/personal"),
        ("https://docs.google.com/document/d/1abc/edit", "docs.google.com/document"),
    ],
)
def test_wildcard_and_host_entries_keep_only_listed_segments(url, site):
    assert site_of(url) == site


def test_a_hosts_own_entry_wins_over_a_wildcard():
    allow_list = {"*.example.com": frozenset({"app"}), "private.example.com": frozenset()}
    assert site_of("https://team.example.com/app/x", allow_list) == "team.example.com/app"
    assert site_of("https://private.example.com/app/x", allow_list) == "private.example.com"


def test_a_wildcard_never_spans_a_public_suffix():
    # Even handed a wildcard over github.io, trimming applies it to no one's site.
    allow_list = {"*.github.io": frozenset({"wiki"}), "*.co.uk": frozenset({"wiki"})}
    assert site_of("https://alice.github.io/wiki", allow_list) == "alice.github.io"
    assert site_of("https://shop.co.uk/wiki", allow_list) == "shop.co.uk"
    assert allow_listed_segments("alice.github.io", allow_list) == frozenset()


@pytest.mark.parametrize(
    "entry",
    [
        '"*.github.io" = ["wiki"]',  # a private suffix: every name under it is someone else's site
        '"*.co.uk" = ["wiki"]',
        '"*.team.example.com" = ["wiki"]',  # not a registrable domain
        '"Example.com" = ["wiki"]',
        '"www.example.com" = ["wiki"]',
        '"xn--bcher-kva.example" = ["wiki"]',  # stored in Unicode form
        '"localhost" = ["wiki"]',
        '"127.0.0.1" = ["wiki"]',
        '"example.com" = ["Maps"]',
        '"example.com" = ["a/b"]',
        '"example.com" = ["' + "x" * 41 + '"]',
        '"example.com" = "maps"',
    ],
)
def test_a_malformed_allow_list_entry_stops_start_up(tmp_path, entry):
    path = tmp_path / "sites.toml"
    path.write_text(f"[sites]\n{entry}\n")
    with pytest.raises(ValueError, match="sites.toml: entry"):
        multi_app_sites(path)


def test_the_public_suffix_list_is_the_bundled_one_with_no_network_and_no_disk_writes(tmp_path):
    # A fresh interpreter that records, from before the import on, anything that could reach the network and any
    # file written. The environment asks tldextract for a download and a cache directory; explicit arguments must
    # win. (urllib3, imported by tldextract through requests, binds a throwaway socket to ::1 to learn whether the
    # machine has IPv6: a loopback bind, no traffic, so it is let through.)
    script = r"""
import json, os, sys
REACHING_OUT = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
                "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo"}
seen = []
def watch(event, args):
    if event in REACHING_OUT or (event == "socket.bind" and args[1][0] not in ("::1", "127.0.0.1")):
        seen.append(f"{event}: {args[1:]}")
    elif event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        ):
            seen.append(f"open for writing: {path}")
    elif event in ("os.mkdir", "os.rename", "os.remove", "shutil.copyfile"):
        seen.append(f"{event}: {args[0]}")
sys.addaudithook(watch)
from stream_jobs.trim import site_of
sites = [site_of(u) for u in ["https://www.example.co.uk/x", "https://www.co.uk/", "https://alice.github.io/"]]
print(json.dumps({"sites": sites, "seen": seen}))
"""
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLDEXTRACT_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(cache),
        "TLDEXTRACT_CACHE": str(cache),
        "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "https://publicsuffix.org/list/public_suffix_list.dat",
    }
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result == {"sites": ["example.co.uk", "www.co.uk", "alice.github.io"], "seen": []}
    assert not cache.exists()


# --- hosts: IDN, addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://xn--/",
        "https://xn--a.com/",
        "https://xn--ñ.com/",  # mixed: punycode prefix on a Unicode label
        "https://xn--zz-.com/",
        "https://ab.xn--/",
        "https://XN--BCHER-KVA-.example/",
        "https://xn--bcher-kva.xn--/",
        "https://a_b.com/",
        "https://" + "a" * 64 + ".com/",
    ],
)
def test_invalid_punycode_and_host_names_become_the_invalid_label(url):
    assert site_of(url) == INVALID_URL


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("http://[fe80::1%eth0]:8080/x", "[fe80::1]:8080"),  # a zone id names the sender's interface: dropped
        ("http://[fe80::1%25eth0]/", "[fe80::1]"),
        ("http://[FE80::1%25En0]/", "[fe80::1]"),
        ("http://[::ffff:127.0.0.1]:3000/", "127.0.0.1:3000"),  # IPv4-mapped: the IPv4 address it stands for
        ("http://[::ffff:7f00:1]/", "127.0.0.1"),
        ("http://127.1:8000/", "127.0.0.1:8000"),  # what a browser makes of these hosts
        ("http://0x7f.0.0.1/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://010.0.0.1/", "8.0.0.1"),
        ("http://alice@[::1]:5173/", "[::1]:5173"),
        ("http://LocalHost:8501/", "localhost:8501"),
        ("http://app.localhost:3000/x", "app.localhost:3000"),
    ],
)
def test_addresses_are_stored_in_one_plain_form(url, site):
    assert site_of(url) == site


@pytest.mark.parametrize(
    "url",
    [
        "http://[v1.secret]/",  # an IPvFuture literal is not a host name
        "http://[1.2.3.4]/",
        "http://[fe80::1%]/",
        "http://[::1/",
        "http://1.2.3.4.5/",
        "http://256.0.0.1/",
        "http://example.123/",  # a browser refuses a host that ends in a number but is no address
    ],
)
def test_malformed_addresses_become_the_invalid_label(url):
    assert site_of(url) == INVALID_URL


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://good.com\\@evil.com/", "good.com"),  # as a browser reads it
        ("https://alice:pw@good.com\\maps", "good.com"),
        ("https://www.google.com\\maps\\x", "google.com/maps"),
        ("https://ex%61mple.com/", "example.com"),
        ("example.com/go?to=https://other.org/x", "example.com"),
        ("localhost:3000/go?to=https://other.org/x", "localhost:3000"),
        ("https://www.goo\tgle.com/ma\nps", "google.com/maps"),
    ],
)
def test_urls_are_read_as_a_browser_reads_them(url, site):
    assert site_of(url) == site


def test_the_longest_host_fits_the_site_column():
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57, "com"])
    assert len(host) == 253
    assert site_of(f"https://{host}/x") == host


# --- properties --------------------------------------------------------------------------------------------------

_SITE = re.compile(r"^(\[[0-9a-f:.]+\]|[^\s/?#@:\[\]%\\]+)(:\d{1,5})?(/[a-z0-9-]+)?$")
_MAX_SITE_CHARS = 300


def _allowed(site: str) -> bool:
    if site in FIXED_LABELS:
        return True
    if len(site) > _MAX_SITE_CHARS or not _SITE.match(site):
        return False
    if "/" in site:
        host, segment = site.split("/", 1)
        return segment in allow_listed_segments(host)
    return True


# Characters that carry meaning in a URL, mixed with anything at all (lone surrogates included).
_url_chars = st.one_of(
    st.sampled_from(list("@:/\\?#[]%.-_~!$&'()*+,;= \t\nÉü。ｗ0123456789abcxnw")),
    st.characters(exclude_categories=()),
)
_schemes = st.sampled_from(["", "http://", "https://", "HTTPS://", "ws://", "wss://", "http:", "//", "file://", "x:"])
_url_ish = st.builds(
    lambda scheme, rest: scheme + rest,
    _schemes,
    st.text(alphabet=_url_chars, max_size=80),
)
_any_str = st.text(alphabet=st.characters(exclude_categories=()), max_size=300)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_any_str, _url_ish))
def test_any_string_yields_no_query_fragment_userinfo_or_unlisted_path(raw):
    site = site_of(raw)  # never raises
    assert site is None or _allowed(site), site


# A URL's host, and the site it must become (before any port or allow-listed segment).
_HOSTS = {
    "www.google.com": "google.com",
    "GitHub.com": "github.com",
    "docs.google.com": "docs.google.com",
    "www.example.co.uk": "example.co.uk",
    "www.co.uk": "www.co.uk",
    "co.uk": "co.uk",
    "alice.github.io": "alice.github.io",
    "acme.atlassian.net": "acme.atlassian.net",
    "ÉX.com": "éx.com",
    "xn--bcher-kva.example": "bücher.example",
    "localhost": "localhost",
    "127.0.0.1": "127.0.0.1",
    "[::1]": "[::1]",
    "[fe80::1%25eth0]": "[fe80::1]",
    "[::ffff:10.0.0.7]": "10.0.0.7",
}
_KEEPS_PORT = {"localhost", "127.0.0.1", "[::1]", "[fe80::1]", "10.0.0.7"}
_USERINFO = st.from_regex(
    r"zqx[A-Za-z0-9._~!$&'()*+,;=%-]{0,10}(:[A-Za-z0-9._~!$&'()*+,;=%:-]{0,10})?@", fullmatch=True
)
_PATH_TEXT = st.text(alphabet=st.one_of(st.sampled_from(list("/\\%?#@:;. \t")), st.characters()), max_size=40)


@st.composite
def _urls(draw):
    scheme = draw(st.sampled_from(["http://", "https://", "HTTP://", "wss://", ""]))
    user = draw(st.one_of(st.just(""), _USERINFO)) if scheme else ""
    host = draw(st.sampled_from(sorted(_HOSTS)))
    port = draw(st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}")))
    path = draw(st.sampled_from(["", "maps", "MAPS/x", "wiki", "document/d/1", "alice", "%6daps"])) + draw(_PATH_TEXT)
    query = draw(st.sampled_from(["", "?qqsecret=", "?token=qqsecret&x="])) + draw(_PATH_TEXT)
    fragment = draw(st.sampled_from(["", "#ffsecret"])) + draw(_PATH_TEXT)
    return f"{scheme}{user}{host}{port}/{path}{query}{fragment}", _HOSTS[host], port, not scheme


@settings(max_examples=1500, deadline=None)
@given(_urls())
def test_a_url_becomes_its_host_and_at_most_a_listed_segment(case):
    url, host, port, bare = case
    site = site_of(url)
    assert site is not None and _allowed(site), (url, site)
    for secret in ("zqx", "qqsecret", "ffsecret"):
        assert secret not in site, (url, site)
    if bare and host not in _KEEPS_PORT and not (_PUBLIC_SUFFIXES(host).suffix and _registrable_domain(host)):
        assert site == INVALID_URL, (url, site)  # without a scheme, only a name under a listed suffix is a site
    elif host in _KEEPS_PORT:
        assert site == (host if port in ("", ":0") else host + port), (url, site)
    else:
        assert site == host or site.removeprefix(host + "/") in allow_listed_segments(host), (url, site)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_urls().map(lambda case: case[0]), _url_ish, _any_str))
def test_a_site_read_back_as_a_url_is_the_same_site(raw):
    site = site_of(raw)
    if site is not None and site not in FIXED_LABELS:
        assert site_of("https://" + site) == site, (raw, site)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_urls().map(lambda case: case[0]), _url_ish))
def test_caching_by_url_head_never_changes_a_site(raw):
    # An explicit allow-list takes the uncached path through the whole URL.
    assert site_of(raw) == site_of(raw, multi_app_sites())


@pytest.mark.parametrize(
    ("text", "site"),
    [
        ("notes.txt", INVALID_URL),
        ("a sentence, not an address", INVALID_URL),
        ("foo", INVALID_URL),
        ("co.uk", INVALID_URL),
        ("example.com/page?q=1", "example.com"),
        ("docs.python.org", "docs.python.org"),
        ("localhost:3000", "localhost:3000"),
        ("10.0.0.7", "10.0.0.7"),
        ("http://intranet/wiki", "intranet"),
    ],
)
def test_a_bare_string_is_a_site_only_when_it_names_one(text, site):
    assert site_of(text) == site
