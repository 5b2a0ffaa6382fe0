"""The collector's generated Wayland bindings are what pywayland's scanner makes of the protocol files shipped
beside them (infra/wayland_protocols.py), so an edit to either is caught."""

from __future__ import annotations

from infra.wayland_protocols import PROTOCOLS, generate


def test_the_committed_bindings_are_regenerated_exactly(tmp_path):
    written = generate(tmp_path)
    assert sorted(p.name for p in written) == ["idle.py", "wlr_foreign_toplevel_management_unstable_v1.py"]
    for module in written:
        assert module.read_text() == (PROTOCOLS / module.name).read_text(), module.name


def test_the_bindings_use_pywaylands_own_core_protocol():
    for name in ("idle.py", "wlr_foreign_toplevel_management_unstable_v1.py"):
        text = (PROTOCOLS / name).read_text()
        assert "from .wayland import" not in text
        assert "from pywayland.protocol.wayland import WlSeat" in text
