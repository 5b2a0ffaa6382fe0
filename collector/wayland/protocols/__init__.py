"""Wayland protocol bindings pywayland does not bundle, generated from the protocol files beside them by
`python -m infra.wayland_protocols` (do not edit the generated modules):

- `wlr-foreign-toplevel-management-unstable-v1.xml` (wlroots: which toplevel windows exist and which is active),
  from https://gitlab.freedesktop.org/wlroots/wlr-protocols, under the MIT-style licence in its copyright block;
- `kde-idle.xml` (`org_kde_kwin_idle`: idle notification on KWin and on wlroots before ext-idle-notify), from
  KDE's plasma-wayland-protocols, LGPL-2.1-or-later as its copyright block says.
"""
