"""Devices: the owner's enrolled devices with their time in the period; rename, revoke, and a one-time
enrollment code for a new one. Everything about a device goes through the gateway with the owner's token."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import formatting
from dashboard.access import Gateway, one_line
from dashboard.context import View, current_view, load, require_owner, settings
from schemas import api_client
from warehouse import queries


def _when(seconds: int, zone) -> str:
    return datetime.fromtimestamp(seconds, UTC).astimezone(zone).strftime("%d %b %Y %H:%M") if seconds else "–"


def _forget_device_names(view: View) -> None:
    st.session_state.pop(f"devices_of_{view.user_id}", None)  # the sidebar's filter lists the new names


def show(view: View) -> None:
    st.title("Devices")
    owner = require_owner(view)
    gateway = Gateway.of(settings())
    if notice := st.session_state.pop("device_notice", None):
        st.success(notice)
    if problem := st.session_state.pop("device_problem", None):
        st.error(problem)
    with st.spinner("Loading devices…"):
        try:
            devices = api_client.list_devices(gateway.address, gateway.ca_pem, owner.token)
        except Exception as exc:
            st.error(f"Could not load the devices: {one_line(exc)}")
            st.stop()
    usage = load("time per device", queries.time_per_device, view.user_id, view.period.start, view.period.end)
    seconds = dict(zip(usage["device_id"], usage["seconds"], strict=True))
    zone = view.period.zone
    st.caption(f"Time in {view.period.label()}")
    if devices:
        st.table(
            pd.DataFrame(
                {
                    "Name": [d.name for d in devices],
                    "OS": [f"{d.os} {d.os_version}".strip() for d in devices],
                    "State": ["revoked" if d.revoked else "active" for d in devices],
                    "Enrolled": [_when(d.created_at, zone) for d in devices],
                    "Certificate until": [_when(d.certificate_not_after, zone) for d in devices],
                    "Active time": [formatting.duration(seconds.get(d.device_id, 0.0)) for d in devices],
                }
            ),
            hide_index=True,
            width="stretch",
        )
    else:
        st.info("No devices yet: enroll one with a code below.")

    active = formatting.device_labels({d.device_id: d.name for d in devices if not d.revoked})
    if active:
        st.subheader("Rename or revoke")
        chosen = st.selectbox("Device", list(active), format_func=active.get, key="device_chosen")
        left, right = st.columns(2)
        with left:
            name = st.text_input("New name", value=active[chosen], key=f"device_name_{chosen}")
            if st.button("Rename", key="device_rename"):
                try:
                    api_client.rename_device(gateway.address, gateway.ca_pem, owner.token, chosen, name)
                except Exception as exc:
                    st.session_state["device_problem"] = f"Could not rename: {one_line(exc)}"
                else:
                    st.session_state["device_notice"] = f"Renamed to {name.strip()}."
                    _forget_device_names(view)
                st.rerun()
        with right:
            st.caption("A revoked device is refused from its next upload; its history stays until you delete it.")
            sure = st.checkbox(f"Yes, revoke {active[chosen]}", key=f"device_revoke_sure_{chosen}")
            if st.button("Revoke", key="device_revoke", disabled=not sure):
                try:
                    api_client.revoke_device(gateway.address, gateway.ca_pem, owner.token, chosen)
                except Exception as exc:
                    st.session_state["device_problem"] = f"Could not revoke: {one_line(exc)}"
                else:
                    st.session_state["device_notice"] = f"Revoked {active[chosen]}."
                    _forget_device_names(view)
                st.rerun()

    st.subheader("Enroll a new device")
    st.caption("A one-time code for the collector on the new device, valid for 15 minutes.")
    if st.button("Make an enrollment code", key="enrollment_code"):
        try:
            code = api_client.create_enrollment_code(gateway.address, gateway.ca_pem, owner.token)
        except Exception as exc:
            st.error(f"Could not make a code: {one_line(exc)}")
        else:
            st.code(code.code, language=None)
            st.caption(f"Valid until {_when(code.expires_at, zone)}; it works once.")


if __name__ == "__main__":
    show(current_view())
