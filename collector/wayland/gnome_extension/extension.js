/* Productimon's GNOME Shell extension, for GNOME Shell 43 and 44 (extension45.js is the same for 45 and newer).
 *
 * On GNOME's Wayland session no ordinary program may ask which window is in front; the shell knows. While enabled,
 * this extension owns the name io.productimon.Shell on the session bus and answers one method there, on
 * /io/productimon/Shell, interface io.productimon.Shell1:
 *
 *     ActiveWindow() -> (s app_id, s title)
 *
 * the focused window's application id (its .desktop file's name without ".desktop", else the window's class) and
 * its title; two empty strings when no window has the focus. It answers only when asked, and tells nothing else:
 * no other windows, no window contents, no input. Like every extension without "unlock-dialog" in its session modes,
 * the shell disables it while the screen is locked, so nothing is answered then.
 *
 * The collector (collector/wayland/gnome.py) asks once a second; docs/collector.md "Wayland" tells the rest.
 */
'use strict';

const {Gio, Shell} = imports.gi;

// BEGIN shared with extension45.js: the text between these markers is the same in both (a unit test checks it).
const BUS_NAME = 'io.productimon.Shell';
const OBJECT_PATH = '/io/productimon/Shell';
const INTERFACE_XML = `
<node>
  <interface name="io.productimon.Shell1">
    <method name="ActiveWindow">
      <arg type="s" name="app_id" direction="out"/>
      <arg type="s" name="title" direction="out"/>
    </method>
  </interface>
</node>`;

/* [app id, title] of the focused window, or ['', ''] when none has the focus. */
function activeWindow(display, tracker) {
    const win = display.get_focus_window();
    if (!win)
        return ['', ''];
    let appId = '';
    const app = tracker.get_window_app(win);
    // A window the shell matched to no .desktop file gets an app of its own, "window:<n>": no name at all.
    if (app && !app.is_window_backed())
        appId = (app.get_id() ?? '').replace(/\.desktop$/, '');
    if (!appId)
        appId = win.get_wm_class() ?? win.get_gtk_application_id() ?? '';
    return [appId, win.get_title() ?? ''];
}

class ActiveWindowService {
    constructor(connection) {
        this._exported = Gio.DBusExportedObject.wrapJSObject(INTERFACE_XML, this);
        this._exported.export(connection, OBJECT_PATH);
        this._nameId = Gio.bus_own_name_on_connection(
            connection, BUS_NAME, Gio.BusNameOwnerFlags.NONE, null, null);
    }

    ActiveWindow() {
        return activeWindow(global.display, Shell.WindowTracker.get_default());
    }

    stop() {
        Gio.bus_unown_name(this._nameId);
        this._exported.unexport();
    }
}
// END shared

class Extension {
    enable() {
        this._service = new ActiveWindowService(Gio.DBus.session);
    }

    disable() {
        this._service?.stop();
        this._service = null;
    }
}

function init() {
    return new Extension();
}
