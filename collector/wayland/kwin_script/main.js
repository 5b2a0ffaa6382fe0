// The Productimon collector's KWin script (collector/wayland/kde.py; docs/collector.md "Wayland").
//
// On KDE Plasma's Wayland session only KWin knows which window is in front. The collector loads this script into
// KWin through KWin's scripting D-Bus API; the script calls the collector back over the session D-Bus with the
// active window's desktop file name, resource class and caption: once at load, and whenever the active window or
// its caption (or desktop file name) changes. Nothing else of any window is read or sent.
//
// The names are fixed, and the same in kde.py: one collector per session owns the bus name.

const SERVICE = "io.productimon.Collector";
const PATH = "/io/productimon/Collector";
const INTERFACE = "io.productimon.Collector.KWin";
const METHOD = "ActiveWindow"; // (b present, s desktopFileName, s resourceClass, s caption)

// KWin 5.27 names them activeClient and clientActivated; KWin 6 activeWindow and windowActivated.
function front() {
    return workspace.activeWindow !== undefined ? workspace.activeWindow : workspace.activeClient;
}

function text(value) {
    return value ? String(value) : "";
}

function report() {
    const window = front();
    if (window) {
        callDBus(SERVICE, PATH, INTERFACE, METHOD, true,
            text(window.desktopFileName), text(window.resourceClass), text(window.caption));
    } else {
        callDBus(SERVICE, PATH, INTERFACE, METHOD, false, "", "", "");
    }
}

let watched = null; // the window in front, whose changes are reported

function activated(window) {
    if (watched) {
        try {
            watched.captionChanged.disconnect(report);
            watched.desktopFileNameChanged.disconnect(report);
        } catch (error) {
            // the window has closed: its signals went with it
        }
    }
    watched = window;
    if (window) {
        window.captionChanged.connect(report);
        window.desktopFileNameChanged.connect(report);
    }
    report();
}

(workspace.windowActivated || workspace.clientActivated).connect(activated);
activated(front());
