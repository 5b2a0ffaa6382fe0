/* Productimon's GNOME Shell extension, for GNOME Shell 45 and newer, which load extensions as ES modules
 * (extension.js is the same for 43 and 44). The installer copies this file as extension.js, with metadata45.json.
 *
 * While enabled, it owns the name io.productimon.Shell on the session bus and answers one method there, on
 * /io/productimon/Shell, interface io.productimon.Shell1:
 *
 *     ActiveWindow() -> (s app_id, s title)
 *
 * the focused window's application id (its .desktop file's name without ".desktop", else the window's class) and
 * its title; two empty strings when no window has the focus. Nothing else: no other windows, no window contents, no
 * input; and nothing while the screen is locked (the shell disables it then). docs/collector.md "Wayland".
 */
import Gio from 'gi://Gio';
import Shell from 'gi://Shell';
import {Extension} from 'resource:///org/gnome/shell/extensions/extension.js';

// BEGIN shared with extension.js: the text between these markers is the same in both (a unit test checks it).
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

export default class ProductimonExtension extends Extension {
    enable() {
        this._service = new ActiveWindowService(Gio.DBus.session);
    }

    disable() {
        this._service?.stop();
        this._service = null;
    }
}
