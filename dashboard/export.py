"""The user's own data as files: CSV and JSON of a query result, with timestamps in ISO 8601 UTC and devices
named as the person named them."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd

FORMATS = ("CSV", "JSON")
MIME_TYPES = {"CSV": "text/csv", "JSON": "application/json"}


def _portable(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            utc = out[column].dt.tz_convert("UTC")
            out[column] = [None if pd.isna(t) else t.isoformat(timespec="milliseconds")[:-6] + "Z" for t in utc]
        elif pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%d")
    return out


def name_devices(df: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """`df` with a `device` column, the device's name (`formatting.device_labels`: with the start of its id
    where names repeat), just before its `device_id`, which stays; a device not in `labels` is named by its
    id. A frame without `device_id` is returned as it is."""
    if "device_id" not in df.columns:
        return df
    out = df.copy()
    names = [labels.get(d, d) for d in out["device_id"]]
    out.insert(out.columns.get_loc("device_id"), "device", pd.Series(names, index=out.index, dtype="object"))
    return out


def to_csv(df: pd.DataFrame) -> bytes:
    return _portable(df).to_csv(index=False).encode("utf-8")


def to_json(df: pd.DataFrame) -> bytes:
    """A JSON array of one object per row; integers stay integers."""
    records = _portable(df).to_dict(orient="records")
    return json.dumps(records, ensure_ascii=False, indent=1, default=_plain).encode("utf-8")


def _plain(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def encode(df: pd.DataFrame, fmt: str) -> tuple[bytes, str]:
    """The file's bytes and MIME type for one of FORMATS."""
    if fmt == "CSV":
        return to_csv(df), MIME_TYPES[fmt]
    if fmt == "JSON":
        return to_json(df), MIME_TYPES[fmt]
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def file_name(what: str, first: date, last: date, fmt: str) -> str:
    return f"productimon-{what}-{first.isoformat()}-{last.isoformat()}.{fmt.lower()}"
