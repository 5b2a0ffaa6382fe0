"""Which first path segment of a URL may be kept with its host: the shared allow-list (multi_app_sites.toml),
read by the worker's trimming (stream_jobs/trim.py, which also validates it) and by the collector, which applies
it before a URL reaches its disk. Pure lookups; the file is read once."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from schemas.compat import tomllib

ALLOW_LIST_FILE = Path(__file__).with_name("multi_app_sites.toml")


@cache
def raw_multi_app_sites(path: Path = ALLOW_LIST_FILE) -> dict[str, object]:
    """The file's [sites] table as written: host (or `*.` + registrable domain) -> segments."""
    with path.open("rb") as f:
        return dict(tomllib.load(f)["sites"])


def kept_segment(host: str, segment: str, sites: dict[str, object] | None = None) -> str | None:
    """`segment` (lower-cased) when the allow-list keeps it for `host` (its own entry, else the wildcard entry of
    a domain it is a subdomain of), else None. A host's own entry wins, as in stream_jobs/trim.py."""
    sites = raw_multi_app_sites() if sites is None else sites
    host = host.lower().removeprefix("www.")
    segment = segment.lower()
    listed = sites.get(host)
    if listed is None:
        labels = host.split(".")
        listed = next(
            (sites[f"*.{'.'.join(labels[i:])}"] for i in range(1, len(labels)) if f"*.{'.'.join(labels[i:])}" in sites),
            None,
        )
    return segment if isinstance(listed, list) and segment in listed else None
