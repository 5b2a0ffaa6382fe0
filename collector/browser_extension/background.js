// Productimon: reports the focused browser window's active tab (URL and title) to the local collector, through
// the native host com.productimon.browser (`productimon-browser install-host`). Private windows are never
// reported; nothing is sent anywhere else. One source for Chromium (service worker) and Firefox (event page).

const api = globalThis.browser ?? globalThis.chrome;
const HOST = "com.productimon.browser";
// While a tab stays in front it is reported again this often; the collector forgets a report after 15 s.
const REPEAT_MS = 5000;
// A missing host (not installed) is retried this rarely, so a browser without the collector does no busy work.
const RECONNECT_MS = 30000;

let port = null;
let reconnectAt = 0;
let lastSent = null;
let pending = null;
// Whether a window of this browser has the focus, as the last focus event said (WINDOW_ID_NONE: another
// application, or a private window this extension may not see). Until the first event, a window's `focused`.
let browserFocused = null;

function connect() {
  if (port) return port;
  if (Date.now() < reconnectAt) return null;
  let opened;
  try {
    opened = api.runtime.connectNative(HOST);
  } catch (error) {
    console.warn(`Productimon: cannot start the native host ${HOST}: ${error}`);
    reconnectAt = Date.now() + RECONNECT_MS;
    return null;
  }
  opened.onDisconnect.addListener((closed) => {
    // Chromium says why in runtime.lastError, Firefox in port.error.
    const why = api.runtime.lastError?.message ?? closed?.error?.message ?? "it exited";
    console.warn(`Productimon: native host ${HOST} disconnected: ${why}`);
    if (port === opened) port = null;
    lastSent = null;
    reconnectAt = Date.now() + RECONNECT_MS;
  });
  // Announce first: a page can finish loading before the listeners below ever see an event.
  opened.postMessage({ type: "hello", version: api.runtime.getManifest().version });
  port = opened;
  return port;
}

// What is in front: the active tab of the last focused window, only while that window has the focus and is not
// private. An extension not allowed in private windows does not even see them; the window it sees then loses the
// focus, which makes this "none" too.
async function current() {
  let win;
  try {
    win = await api.windows.getLastFocused({ populate: true });
  } catch {
    return { type: "none" };
  }
  if (!win || win.incognito || !(browserFocused ?? win.focused)) return { type: "none" };
  const tab = (win.tabs ?? []).find((t) => t.active);
  if (!tab || tab.incognito || !tab.url) return { type: "none" };
  return { type: "tab", url: tab.url, title: tab.title || null, incognito: false };
}

async function report(repeat) {
  const message = await current();
  const text = JSON.stringify(message);
  // A change goes out at once; an unchanged tab is repeated by the timer; an unchanged "none" is never
  // repeated, so a browser in the background cannot hide the one in front.
  if (text === lastSent && (message.type === "none" || !repeat)) return;
  const target = connect();
  if (!target) return;
  try {
    target.postMessage(message);
    lastSent = text;
  } catch (error) {
    console.warn(`Productimon: cannot report to ${HOST}: ${error}`);
    port = null;
    lastSent = null;
  }
}

// Events come in bursts (a navigation updates URL, title and status): report once, right after the burst.
function changed() {
  clearTimeout(pending);
  pending = setTimeout(() => report(false), 50);
}

api.tabs.onActivated.addListener(changed);
api.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (tab.active && (change.url || change.title || change.status === "complete")) changed();
});
api.tabs.onRemoved.addListener(changed);
api.windows.onFocusChanged.addListener((windowId) => {
  browserFocused = windowId !== api.windows.WINDOW_ID_NONE;
  changed();
});
api.runtime.onStartup.addListener(changed);
api.runtime.onInstalled.addListener(changed);
api.alarms.onAlarm.addListener(() => report(true));

// The open native port keeps the worker alive, and the interval repeats; the alarm wakes a worker the browser
// stopped anyway (30 s is the shortest period browsers allow).
api.alarms.create("productimon-repeat", { periodInMinutes: 0.5 });
setInterval(() => report(true), REPEAT_MS);
connect();
changed();
