"""The collector's sources on native Wayland desktops, where no ordinary client may see other programs' windows:
wlroots compositors through their foreign-toplevel protocol (`wlroots.py`), GNOME Shell through an extension
shipped with the collector (`gnome.py`), KDE Plasma through a KWin script (`kde.py`), and idle time from the
compositor or the desktop (`idle.py`, and the D-Bus interfaces in `gnome.py`, `kde.py`, `screensaver.py`).
Which one a session gets is chosen in `collector/sampling.py` (docs/collector.md "Wayland")."""
