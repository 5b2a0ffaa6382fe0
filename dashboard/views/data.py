"""Data: the owner's export (CSV or JSON) of any period, an import of ActivityWatch history, deletion of a range,
a device's data or everything, and deleting the account. Every destructive action asks for confirmation first."""

from __future__ import annotations

import streamlit as st

from dashboard import export, formatting
from dashboard.access import Gateway, one_line
from dashboard.context import View, current_view, require_owner, settings, warehouse
from schemas import api_client
from schemas.activitywatch import NotAnExport, plan_import, read_export
from schemas.deletions import ALL_DATA, DEVICE, PERIOD
from warehouse import queries

DATASETS = {
    "Activity intervals": ("intervals", queries.export_intervals),
    "Time per app": ("apps", queries.time_per_app),
    "Time per site": ("sites", queries.time_per_site),
    "Daily totals": ("daily", None),
    "Focus sessions": ("focus", queries.focus_sessions),
}
CONFIRM_WORD = "DELETE"
# The export last prepared in this session: (what was asked for, the file's bytes).
PREPARED_KEY = "export_prepared"


def _export(view: View, devices: dict[str, str]) -> None:
    """The export; `devices` (id -> label) names each row's device beside its id."""
    st.subheader("Export")
    period = view.period
    st.caption(
        f"{period.label()} ({period.tz}); the device filter applies. Rows of one device name it (`device`, as on "
        "the Devices page) beside its id (`device_id`)."
    )
    left, right = st.columns(2)
    dataset = left.selectbox("What", list(DATASETS), key="export_dataset")
    fmt = right.radio("Format", export.FORMATS, horizontal=True, key="export_format")
    name, query = DATASETS[dataset]
    client, user, chosen = warehouse(), view.user_id, view.device_filter

    def produce() -> bytes:
        if query is None:
            df = queries.daily_trend(client, user, period.start, period.end, tz=period.tz, devices=chosen)
        else:
            df = query(client, user, period.start, period.end, devices=chosen)
        return export.encode(export.name_devices(df, devices), fmt)[0]

    # Prepared on request, then offered as a stored file: a large export is not built on every visit, and the
    # download carries its file name (a download built lazily at the click can lose it when a rerun races it).
    wanted = (dataset, fmt, period.start, period.end, tuple(chosen or ()), tuple(sorted(devices.items())))
    prepared = st.session_state.get(PREPARED_KEY)
    if prepared is None or prepared[0] != wanted:
        st.session_state.pop(PREPARED_KEY, None)
        if not st.button(f"Prepare {dataset.lower()} as {fmt}", key="export_prepare"):
            return
        with st.spinner("Preparing the export…"):
            prepared = (wanted, produce())
        st.session_state[PREPARED_KEY] = prepared
    st.download_button(
        f"Download {dataset.lower()} as {fmt}",
        data=prepared[1],
        file_name=export.file_name(name, period.first, period.last, fmt),
        mime=export.MIME_TYPES[fmt],
        key="export_download",
        on_click="ignore",
    )


ANOTHER_COMPUTER = ""


def _import(view: View, devices: dict[str, str]) -> None:
    """An ActivityWatch export into the account, through the gateway's Import (docs/activitywatch.md)."""
    owner = require_owner(view)
    st.subheader("Import from ActivityWatch")
    st.caption(
        "An export from ActivityWatch's web UI (Settings, Export all buckets as JSON) or its /api/0/export. Window "
        "and AFK time become that computer's history, web tabs its sites; your privacy choices apply as to "
        "everything recorded. Importing the same file again changes nothing, and time the device recorded itself "
        "is never counted twice."
    )
    uploaded = st.file_uploader("ActivityWatch export (JSON)", type=["json"], key="import_file")
    options = [ANOTHER_COMPUTER, *devices]
    device = st.selectbox(
        "It was recorded on",
        options,
        format_func=lambda d: devices.get(d, "another computer (none of these devices)"),
        key="import_device",
    )
    strict = st.checkbox(
        "All or nothing: import nothing when any part of the file is refused", key="import_all_or_nothing"
    )
    if uploaded is None or not st.button("Import", type="primary", key="import_start"):
        return
    try:
        plan = plan_import(read_export(uploaded.getvalue()))
    except NotAnExport as exc:
        st.error(f"Nothing was imported: {exc}")
        return
    bar = st.progress(0.0, text="Importing…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"Importing: {done:,} of {total:,} intervals")

    gateway = Gateway.of(settings())
    try:
        summary = api_client.import_activity(
            gateway.address,
            gateway.ca_pem,
            owner.token,
            plan,
            device_id=device,
            all_or_nothing=strict,
            progress=progress,
        )
    except Exception as exc:
        st.error(f"The import stopped: {one_line(exc)}. What was acknowledged is stored; importing again adds the rest")
        return
    lines = summary.lines()
    (st.success if summary.sent else st.error)(lines[0])
    for line in lines[1:]:
        st.caption(line)


def _other_sources(view: View) -> None:
    """Time of imported sources other than the window in front: kept apart, never added to it."""
    df = queries.time_per_source(warehouse(), view.user_id, view.period.start, view.period.end)
    if df.empty:
        return
    st.subheader("Other sources")
    st.caption(f"Imported editor, terminal and media time in {view.period.label()}; never added to the time in front.")
    st.dataframe(df, hide_index=True)


def _confirmed(key: str, what: str) -> bool:
    typed = st.text_input(f"Type {CONFIRM_WORD} to delete {what}", key=key)
    return typed.strip() == CONFIRM_WORD


def _delete(view: View, devices: dict[str, str]) -> None:
    owner = require_owner(view)
    st.subheader("Delete data")
    st.caption("Deleted data is removed from every table before this page says so; it cannot be restored.")
    period = view.period
    scope = st.radio(
        "Delete",
        ["This period", "One device's data", "Everything"],
        horizontal=True,
        key="delete_scope",
    )
    device = None
    if scope == "This period":
        what = f"all activity in {period.label()} ({period.tz})"
    elif scope == "One device's data":
        if not devices:
            st.caption("No devices.")
            return
        device = st.selectbox("Device", list(devices), format_func=devices.get, key="delete_device")
        what = f"all data of {devices[device]}"
    else:
        what = "all of your activity data (the account stays)"
    st.warning(f"This deletes {what}.")
    sure = _confirmed(f"delete_confirm_{scope}", what)
    if st.button("Delete", type="primary", disabled=not sure, key="delete_data"):
        gateway = Gateway.of(settings())
        with st.spinner("Deleting…"):
            try:
                # Through the gateway, which records the deletion first so nothing in flight brings it back.
                if scope == "This period":
                    kind, options = PERIOD, {"period": (period.start, period.end)}
                elif device is not None:
                    kind, options = DEVICE, {"device_id": device}
                else:
                    kind, options = ALL_DATA, {}
                report = api_client.delete_data(gateway.address, gateway.ca_pem, owner.token, kind, **options)
            except Exception as exc:
                st.session_state["data_problem"] = f"Nothing was confirmed deleted: {one_line(exc)}"
            else:
                st.session_state["data_notice"] = f"Deleted {what}: {report.summary}."
                st.session_state.pop(f"delete_confirm_{scope}", None)
        st.rerun()


def _delete_account(view: View) -> None:
    owner = require_owner(view)
    st.subheader("Delete the account")
    st.caption("Revokes every device, deletes all of your data, then the account, and signs you out.")
    with st.form("delete_account"):
        password = st.text_input("Your password", type="password")
        typed = st.text_input(f"Type {CONFIRM_WORD} to delete the account {owner.email}")
        submitted = st.form_submit_button("Delete my account", type="primary")
    if submitted:
        if typed.strip() != CONFIRM_WORD:
            st.error(f"Type {CONFIRM_WORD} to confirm; nothing was deleted.")
            return
        gateway = Gateway.of(settings())
        with st.spinner("Deleting the account and all of its data…"):
            try:
                api_client.delete_account(gateway.address, gateway.ca_pem, owner.token, password)
            except Exception as exc:
                st.error(f"The account was not deleted: {one_line(exc)}")
                return
        st.session_state.clear()
        st.session_state["sign_in_notice"] = f"The account {owner.email} and all of its data were deleted."
        st.rerun()


def show(view: View) -> None:
    owner = require_owner(view)
    st.title("Your data")
    if notice := st.session_state.pop("data_notice", None):
        st.success(notice)
    if problem := st.session_state.pop("data_problem", None):
        st.error(problem)
    gateway = Gateway.of(settings())
    try:
        listed = api_client.list_devices(gateway.address, gateway.ca_pem, owner.token)
        devices = formatting.device_labels({d.device_id: d.name for d in listed})
    except Exception as exc:
        st.error(f"Could not load the devices (an export names them by id): {one_line(exc)}")
        devices = {}
    _export(view, devices)
    st.divider()
    _import(view, devices)
    _other_sources(view)
    st.divider()
    streams = queries.import_streams(warehouse(), view.user_id)
    imported = {row.device_id: row.name or f"{row.host} (ActivityWatch)" for row in streams.itertuples()}
    _delete(view, devices | imported)
    st.divider()
    _delete_account(view)


if __name__ == "__main__":
    show(current_view())
