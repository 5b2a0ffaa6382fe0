"""docs/configuration.md, generated from the settings class itself (plumbing/settings.py): every field, its
environment variable, its default and allowed values, and the comment written above it in the class.

    .venv/bin/python -m infra.config_reference > docs/configuration.md

tests/unit/test_config_reference.py fails when the file and the class differ, or when a setting has no comment.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import typing
from dataclasses import dataclass, field

from pydantic_core import PydanticUndefined

from plumbing.settings import Settings

PREFIX = "PRODUCTIMON_"
# A comment block opening with one of these starts a section of the reference.
_SECTION = re.compile(r"^(Broker|Warehouse|Gateway|Stream worker|Metrics|Dashboard)[.:]\s*")

HEADER = """# Configuration

<!-- Generated from plumbing/settings.py by `python -m infra.config_reference`; edit the comments there. -->

One settings object per server process (`plumbing/settings.py`): environment variables `PRODUCTIMON_<FIELD>`,
or a TOML file named by `PRODUCTIMON_CONFIG`; a bad value stops the process with one line naming it. Errors are
one line; `PRODUCTIMON_TRACEBACK=1` shows the traceback. The collector's own settings are in
[collector.md](collector.md).

What the stack and the collector write is their owner's only: 0700 directories, 0600 files (`ca.crt` too: copy it
to devices as yourself), and a data directory an earlier run left open is made 0700 at start, with a log line.
"""

METRICS = """
Metrics served at `/metrics` when a port is set: `productimon_gateway_intervals_accepted_total`,
`productimon_gateway_intervals_refused_total{reason}`, `productimon_gateway_batches_total{outcome}`,
`productimon_gateway_broker_send_seconds`, `productimon_gateway_store_wait_seconds`,
`productimon_gateway_pushbacks_total`, `productimon_collector_spool_depth` (from the `x-productimon-spool-depth`
header collectors send), `productimon_worker_intervals_stored_total`,
`productimon_worker_intervals_dropped_total{reason}`, `productimon_worker_dead_letters_total`,
`productimon_worker_retries_total`, `productimon_worker_retrying_seconds` (how long the current batch has been
retried; 0 when none is), `productimon_worker_insert_seconds`, `productimon_worker_step_seconds{step}` (per step of
a batch), `productimon_worker_consumer_lag{partition}` and
`productimon_worker_batches_total`.
"""


@dataclass
class Row:
    description: str
    fields: list[str] = field(default_factory=list)


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


def _comment_blocks() -> dict[str, str]:
    """field name -> the comment block written directly above it in the class ('' when none)."""
    source = inspect.getsource(Settings)
    lines = source.splitlines()
    tree = ast.parse(source)
    (cls,) = tree.body
    comments: dict[str, str] = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            block: list[str] = []
            number = node.lineno - 2
            while number >= 0 and lines[number].strip().startswith("#"):
                block.insert(0, lines[number].strip().lstrip("#").strip())
                number -= 1
            comments[node.target.id] = " ".join(block)
    return comments


def sections() -> list[Section]:
    """The settings in class order, grouped: a field without a comment of its own shares the row above."""
    result = [Section("Data")]
    for name, description in _comment_blocks().items():
        if name not in Settings.model_fields:
            continue
        heading = _SECTION.match(description)
        if heading:
            result.append(Section(heading[1]))
            description = description[heading.end() :]
        if description or not result[-1].rows:
            result[-1].rows.append(Row(description))
        result[-1].rows[-1].fields.append(name)
    return [section for section in result if section.rows]


def _default(name: str) -> str:
    info = Settings.model_fields[name]
    if info.default is PydanticUndefined:
        return "computed" if info.default_factory is None else "see below"
    value = info.default
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def _values(name: str) -> str:
    annotation = Settings.model_fields[name].annotation
    if typing.get_origin(annotation) is typing.Literal:
        return " / ".join(f"`{v}`" for v in typing.get_args(annotation))
    bounds = [
        f"{op} {getattr(meta, attr)}"
        for meta in Settings.model_fields[name].metadata
        for attr, op in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
        if getattr(meta, attr, None) is not None
    ]
    kind = getattr(annotation, "__name__", str(annotation))
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def render() -> str:
    out = [HEADER]
    for section in sections():
        out.append(f"\n## {section.title}\n\n| variable | default | values | meaning |\n|---|---|---|---|")
        for row in section.rows:
            for i, name in enumerate(row.fields):
                meaning = row.description if i == 0 else "(with the row above)"
                out.append(f"| `{PREFIX}{name.upper()}` | {_default(name)} | {_values(name)} | {meaning} |")
        if section.title == "Metrics":
            out.append(METRICS.rstrip("\n"))
    out.append("\n`PRODUCTIMON_DATA_DIR` defaults to `~/.local/share/productimon` (`$XDG_DATA_HOME/productimon`).\n")
    return "\n".join(out)


def undocumented() -> list[str]:
    """Settings whose row has no comment to say what they mean."""
    return [name for section in sections() for row in section.rows if not row.description for name in row.fields]


if __name__ == "__main__":
    sys.stdout.write(render())
