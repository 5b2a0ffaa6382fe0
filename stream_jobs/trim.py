"""URL trimming: a URL becomes the site it belongs to, and nothing more (docs/design.md, "URL trimming").

What survives is the lower-cased host (IDN in Unicode form) without `www.`, unless what remains would
be a public suffix (`www.co.uk`); the port only for `localhost` and IP literals (where it is what
tells two local apps apart); the first path segment only for hosts whose allow-list
(`schemas/multi_app_sites.toml`) names it. Scheme, user info, path, query and fragment never survive.
Non-web URLs become a fixed label, never a path; so does a bare string (no scheme) that is not a name under a
listed public suffix, `localhost` or an IP address (a file name, a sentence). Clients are not trusted, so
this runs on every record the stream jobs store, whatever the collector already removed.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from functools import cache, lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import idna
import tldextract

from schemas.sites import ALLOW_LIST_FILE

LOCAL_FILE = "(local file)"
BROWSER_PAGE = "(browser page)"
INLINE_DATA = "(inline data)"
OTHER_SCHEME = "(other)"
INVALID_URL = "(invalid url)"

WEB_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_SCHEME_LABELS = {
    "file": LOCAL_FILE,
    "data": INLINE_DATA,
    "blob": INLINE_DATA,
    "javascript": INLINE_DATA,
    "about": BROWSER_PAGE,
    "chrome": BROWSER_PAGE,
    "chrome-extension": BROWSER_PAGE,
    "chrome-search": BROWSER_PAGE,
    "edge": BROWSER_PAGE,
    "brave": BROWSER_PAGE,
    "opera": BROWSER_PAGE,
    "vivaldi": BROWSER_PAGE,
    "moz-extension": BROWSER_PAGE,
    "view-source": BROWSER_PAGE,
    "devtools": BROWSER_PAGE,
}
FIXED_LABELS = frozenset({*_SCHEME_LABELS.values(), OTHER_SCHEME, INVALID_URL})
_MAX_URL_CHARS = 8192
# Host-level work is cached: intervals repeat the same few hosts, and the stream worker trims every one.
_HOST_CACHE_SIZE = 1 << 16

_ALLOW_LIST_FILE = ALLOW_LIST_FILE  # schemas/multi_app_sites.toml: the collector applies it too
# A kept segment is a fixed word of the site's own navigation. At most 40 characters keeps every site within
# 300 (a host is at most 253), so the warehouse column has a bound.
_SEGMENT = re.compile(r"[a-z0-9-]{1,40}")

# The Public Suffix List snapshot bundled inside tldextract. With no list URLs and no cache directory it never
# touches the network or the disk (tldextract's environment variables cannot turn that back on: explicit
# arguments win); a test watches a fresh interpreter, from the import on, for either. The list changes only when
# the pinned tldextract version does.
#
# Private-section suffixes (github.io, blogspot.com) count as public suffixes. The names beneath them belong to
# different people (alice.github.io is Alice's site, not GitHub's), and those are exactly the boundaries trimming
# must not cross: `www.` is stripped only when what remains is still one owner's name, and an allow-list wildcard
# may not span many owners' sites. The site itself is always the whole host, never a registrable domain.
_PUBLIC_SUFFIXES = tldextract.TLDExtract(
    suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True, include_psl_private_domains=True
)


@lru_cache(maxsize=_HOST_CACHE_SIZE)
def _registrable_domain(name: str) -> str | None:
    """The registrable domain a host name is or lies under (one label above its public suffix), or None when
    the name is itself a public suffix. A name under no listed suffix follows the list's default rule `*`: its
    last label is its suffix (so `wiki.corp.internal` is under `corp.internal`, and `intranet` is a suffix)."""
    parts = _PUBLIC_SUFFIXES(name)
    if parts.suffix:
        return parts.top_domain_under_public_suffix or None
    rest, dot, last = name.rpartition(".")
    return f"{rest.rpartition('.')[2]}.{last}" if dot else None


def _normal_host(host: str) -> str | None:
    """Lower-case, IDN-normalised host name (Unicode form), or None when it is not a valid host name.

    Invalid or mixed punycode (`xn--`, `xn--ñ`, an A-label that decodes to a disallowed code point) is not a
    host: idna rejects it, and the URL becomes the invalid label."""
    host = unquote(host).rstrip(".").lower()
    if not host:
        return None
    try:
        return idna.decode(idna.encode(host, uts46=True))
    except (UnicodeError, ValueError):
        return None


def _ipv6_host(host: str) -> str | None:
    """A bracketed host as stored: the compressed address, or the IPv4 address an IPv4-mapped one stands for.

    A zone id (`fe80::1%eth0`) names a network interface of the machine that sent the URL; it is a local detail
    of that machine, not part of the site, so it is dropped."""
    try:
        ip = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.compressed
    return f"[{ip.compressed}]"


_DIGITS = {16: re.compile(r"[0-9a-f]*"), 8: re.compile(r"[0-7]*"), 10: re.compile(r"[0-9]+")}
_NUMBER_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


def _ipv4_host(host: str) -> str | None:
    """The IPv4 address a host ending in a number stands for, as a browser reads it (WHATWG URL Standard, "IPv4
    parser": `127.1`, `0x7f.0.0.1` and `2130706433` are all 127.0.0.1), or None when it is no address at all."""
    parts = host.split(".")
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        if part.startswith("0x"):
            digits, base = part[2:], 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if not _DIGITS[base].fullmatch(digits):
            return None
        numbers.append(int(digits, base) if digits else 0)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    address = last + sum(n << (8 * (3 - i)) for i, n in enumerate(leading))
    return ipaddress.IPv4Address(address).compressed


@lru_cache(maxsize=_HOST_CACHE_SIZE)
def _stored_host(host: str, bracketed: bool) -> tuple[str, bool] | None:
    """A URL's host as stored, and whether its port is kept; None when it is not a valid host."""
    if bracketed:
        ip = _ipv6_host(host)
        return None if ip is None else (ip, True)
    name = _normal_host(host)
    if name is None:
        return None
    if _NUMBER_LABEL.fullmatch(name.rpartition(".")[2]):
        # A browser reads a host ending in a number as an IPv4 address, or refuses it.
        ip = _ipv4_host(name)
        return None if ip is None else (ip, True)
    if name == "localhost" or name.endswith(".localhost"):
        return name, True
    # "www.co.uk" stays as it is: "co.uk" is a public suffix, nobody's site.
    while name.startswith("www.") and _registrable_domain(name[4:]) is not None:
        name = name[4:]
    return name, False


def _looks_bare(url: str, scheme: str) -> bool:
    """A URL written without a scheme, whose first part is a host (possibly with a port)."""
    if not scheme:
        return True
    if scheme in _SCHEME_LABELS or not ("." in scheme or scheme == "localhost"):
        return False
    return not url.partition(":")[2].startswith("//")


@cache
def multi_app_sites(path: Path = _ALLOW_LIST_FILE) -> dict[str, frozenset[str]]:
    """The allow-list of first path segments per host (or `*.` + registrable domain), read once from the data file.

    A bad entry stops start-up with a one-line error: a typo there would otherwise keep nothing (a host that can
    never match) or too much (a wildcard over a public suffix)."""
    with path.open("rb") as f:
        sites = tomllib.load(f)["sites"]
    allow_list = {}
    for name, segments in sites.items():
        problem = _allow_list_problem(name, segments)
        if problem:
            raise ValueError(f"{path.name}: entry {name!r} {problem}")
        allow_list[name] = frozenset(segments)
    return allow_list


def _allow_list_problem(name: str, segments: object) -> str | None:
    if not isinstance(segments, list) or not all(isinstance(s, str) and _SEGMENT.fullmatch(s) for s in segments):
        return "must list lower-case words of letters, digits and '-', at most 40 characters each"
    if name.startswith("*."):
        domain = name[2:]
        if _stored_host(domain, False) != (domain, False) or _registrable_domain(domain) != domain:
            return "must be '*.' and a registrable domain as stored (one label above a public suffix)"
    elif _stored_host(name, False) != (name, False):
        return "must be a host name as stored (lower case, Unicode form, no 'www.', not localhost or an address)"
    return None


def allow_listed_segments(host: str, allow_list: dict[str, frozenset[str]] | None = None) -> frozenset[str]:
    """The first path segments kept for a stored host: its own entry, else the `*.` entry of its registrable
    domain when the host is a subdomain of it. An own entry wins, so a subdomain can be listed with none."""
    sites = multi_app_sites() if allow_list is None else allow_list
    segments = sites.get(host)
    if segments is None:
        domain = _registrable_domain(host)
        if domain is not None and domain != host:
            segments = sites.get("*." + domain)
    return segments or frozenset()


# Everything that decides a site: scheme, "//", authority and first path segment, up to the next "/", "?", "#" or
# the end. urlsplit reads the same scheme, authority and first segment from this head as from the whole URL, so
# the site can be cached by head. Tabs and newlines (urlsplit deletes them) make the match fail, possessively,
# rather than end early; such URLs, and those without "scheme://", take the uncached path.
_HEAD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*+://[^/?#\t\r\n]*+(?:/[^/?#\t\r\n]*+)?+(?=[/?#]|\Z)")


def site_of(url: str | None, allow_list: dict[str, frozenset[str]] | None = None) -> str | None:
    """The site a URL belongs to, as stored in the warehouse; None when there is no URL at all.

    Never raises: whatever a client sends becomes a site, a fixed label, or the invalid label."""
    if url is None:
        return None
    url = url.strip()
    if not url:
        return None
    if len(url) > _MAX_URL_CHARS:
        return INVALID_URL
    # Browsers read "\" as "/" in web URLs, so "https://a.com\@b.com/" is a page on a.com: read it the same way.
    url = url.replace("\\", "/")
    if allow_list is None:
        head = _HEAD.match(url)
        if head:
            return _site_of_head(head.group())
    return _trim(url, allow_list)


@lru_cache(maxsize=_HOST_CACHE_SIZE // 2)
def _site_of_head(head: str) -> str:
    return _trim(head, None)


def _trim(url: str, allow_list: dict[str, frozenset[str]] | None) -> str:
    try:
        parts = urlsplit(url)
        bare_is_web = not _looks_bare(url, parts.scheme)
        if not bare_is_web:
            # "example.com/page" or "localhost:3000" as some clients send it: read it as a web address.
            parts = urlsplit("http://" + url)
        scheme = parts.scheme
        if scheme not in WEB_SCHEMES:
            return _SCHEME_LABELS.get(scheme, OTHER_SCHEME)
        raw_host = parts.hostname
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return INVALID_URL
    if not raw_host:
        return INVALID_URL

    stored = _stored_host(raw_host, parts.netloc.rpartition("@")[2].startswith("["))
    if stored is None:
        return INVALID_URL
    host, keeps_port = stored
    if not bare_is_web and not keeps_port and not (_PUBLIC_SUFFIXES(host).suffix and _registrable_domain(host)):
        # Without a scheme, only a name under a listed public suffix reads as a web address: "notes.txt", a word
        # or a bare suffix ("foo") are file names or text, not sites. (A file name ending in a country's suffix,
        # "setup.py", cannot be told from a site by its text alone.)
        return INVALID_URL
    if keeps_port:
        return f"{host}:{port}" if port else host

    segments = allow_listed_segments(host, allow_list)
    if segments and parts.path.startswith("/"):
        first = parts.path.split("/", 2)[1].lower()
        if first in segments:
            return f"{host}/{first}"
    return host
