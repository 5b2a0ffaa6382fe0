"""The dashboard's pages. Each module's `show(view)` draws the page for a `View`; run as a page script it
draws it for the current view. The pages only present what the query API answers: no SQL, no rules."""

# name -> (title, icon), in navigation order; the module of each is dashboard/views/<name>.py.
VIEWS = {
    "overview": ("Overview", ":material/dashboard:"),
    "timeline": ("Timeline", ":material/view_timeline:"),
    "trends": ("Trends", ":material/trending_up:"),
    "focus": ("Focus", ":material/center_focus_strong:"),
    "categories": ("Categories", ":material/label:"),
    "goals": ("Goals", ":material/flag:"),
    "devices": ("Devices", ":material/devices:"),
    "data": ("Data", ":material/database:"),
    "privacy": ("Privacy", ":material/shield:"),
    "sharing": ("Sharing", ":material/share:"),
    "insights": ("Insights", ":material/groups:"),
}
