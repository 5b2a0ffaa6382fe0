"""URL trimming: a URL becomes the site it belongs to, and nothing more (DESIGN.md, "URL trimming").

What survives is the lower-cased host without `www.`; the port only for `localhost` and IP literals
(where it is what tells two local apps apart); the first path segment only for hosts whose
allow-list (`multi_app_sites.toml`) names it. Scheme, user info, path, query and fragment never
survive. Non-web URLs become a fixed label, never a path. Clients are not trusted, so this runs on
every record the stream jobs store, whatever the collector already removed.
"""

from __future__ import annotations

import ipaddress
import tomllib
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import idna

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

_ALLOW_LIST_FILE = Path(__file__).with_name("multi_app_sites.toml")


@cache
def multi_app_sites(path: Path = _ALLOW_LIST_FILE) -> dict[str, frozenset[str]]:
    """The allow-list of first path segments per host, read once from the data file."""
    with path.open("rb") as f:
        sites = tomllib.load(f)["sites"]
    return {host.lower(): frozenset(seg.lower() for seg in segments) for host, segments in sites.items()}


def _normal_host(host: str) -> str | None:
    """Lower-case, IDN-normalised host name (Unicode form), or None when it is not a valid host."""
    host = host.rstrip(".").lower()
    if not host:
        return None
    try:
        return idna.decode(idna.encode(host, uts46=True))
    except idna.IDNAError:
        return None


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _looks_bare(url: str, scheme: str) -> bool:
    """A URL written without a scheme, whose first part is a host (possibly with a port)."""
    if "://" in url:
        return False
    if not scheme:
        return True
    return scheme.lower() not in _SCHEME_LABELS and ("." in scheme or scheme.lower() == "localhost")


def site_of(url: str | None, allow_list: dict[str, frozenset[str]] | None = None) -> str | None:
    """The site a URL belongs to, as stored in the warehouse; None when there is no URL at all."""
    if url is None:
        return None
    url = url.strip()
    if not url:
        return None
    if len(url) > _MAX_URL_CHARS:
        return INVALID_URL
    try:
        parts = urlsplit(url)
        if _looks_bare(url, parts.scheme):
            # "example.com/page" or "localhost:3000" as some clients send it: read it as a web address.
            parts = urlsplit("http://" + url)
        scheme = parts.scheme.lower()
        if scheme not in WEB_SCHEMES:
            return _SCHEME_LABELS.get(scheme, OTHER_SCHEME)
        raw_host = parts.hostname
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return INVALID_URL
    if not raw_host:
        return INVALID_URL

    ip = _ip_literal(raw_host)
    if ip is not None:
        host = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
        return f"{host}:{port}" if port else host
    host = _normal_host(raw_host)
    if host is None:
        return INVALID_URL
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host}:{port}" if port else host
    if host.startswith("www."):
        host = host[4:]

    allowed = (multi_app_sites() if allow_list is None else allow_list).get(host)
    if allowed:
        first = parts.path.split("/", 2)[1].lower() if parts.path.startswith("/") else ""
        if first in allowed:
            return f"{host}/{first}"
    return host
