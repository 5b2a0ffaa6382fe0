"""Window titles as they may be kept: the context of what was in front, never its content (docs/privacy-rules.md).

One pure module, run by the collector before anything touches disk and again by the worker, because clients
are not trusted. The worker scrubs what the collector already scrubbed, so `scrub_title` is idempotent: every
title it returns comes back unchanged. That is built in, not hoped for: a title is read with the same tidy ends
its result will have, each segment is normalised before anything reads it, the generic scrub runs to a fixed
point, and a result a second reading could split (a separator or bracket left by a removal) is read again until
it is stable, else nothing is kept. Per kind of app (`app_kind`, from the app name as collectors report it):

- browser: the page's site name or a short page label, normally the last segment of the page title
  ("… · acme/secret-repo · GitHub" -> "GitHub"); search-result pages only as their engine ("Google Search",
  whatever the language); a headline (one long segment) is content and goes. A short single-segment title is
  kept: it cannot be told from a label the collector already kept, and the worker must not undo the
  collector's work. The site (trimmed, passed in by the caller) picks the segment that names it, recognises
  search engines, and serves as the label when the title gives none; nothing else of a URL is ever used.
- terminal: the running program's name ("mysql -u root -p…" -> "mysql"), or "shell" at a prompt; never its
  arguments, user, host or working directory.
- editor, document: the file's base name ("● notes.md - work (Workspace) - Visual Studio Code" -> "notes.md");
  never directories. For editors that show the project folder (VS Code, JetBrains), a lone project name is a
  directory name and goes too.
- mail: the folder kind ("Posteingang" -> "Inbox"), else "message"; never addresses, accounts or subjects.
- chat: the conversation kind ("channel", "direct message", "thread", "call", "meeting", "calendar"), else
  nothing; never channel, workspace or people's names (a workspace or server names the employer or a
  community, and is not needed to count time).
- video: the media file's base name; a player's metadata title (what is being watched) is content.
- files (file managers): a well-known folder ("Downloads"), else "folder": a file manager's title is a
  directory name, which the editor rule already promises never to keep. (Not in the first design; added here.)
- vault (password managers): only the vault file's base name ("vault.kdbx"): their titles otherwise name the
  entry shown, which says which bank or service the user has an account with. (Added too.)
- other (games, unknown apps): the whole title through the generic scrub.

Every text kept has been through the generic scrub (fixed labels such as "Inbox" or "shell" aside); "other"
gets nothing else. It removes e-mail addresses and anything else of the form x@y (user@host prompts too) and
@handles; replaces URLs by their host; cuts file-system paths (POSIX, `~/`, `./`, `C:\\`, UNC, relative `a/b/c`
except pairs of short words such as `TCP/IP`) to their base name; removes credentials: password flags
(`-pSECRET`, `-p SECRET`, `--password[= ]…`, `-u user:pass`), `key=value` pairs whose key names a secret (the
whole pair), `Password: …`, `Authorization: …`, `Bearer …`; random-looking runs of 20+ token characters
(`[A-Za-z0-9+/=_-]`): always 32+ hex digits, a piece (between `_`, `-`, `/`) of 40+ characters mixing letter
cases or digits, three or more digit groups among letters, or 6+ capitals next to digits, and otherwise pieces
whose sub-words are short (a heuristic tuned on real identifiers against random tokens: names such as
`Quarterly_Report_2026` or `XMLHttpRequestHandler` stay); digit runs of 6 or more, also grouped by spaces,
dashes, dots or parentheses (card and phone numbers), except dates and times (2026-05-12, 2026-05, 12.05.2026,
10.21.33). Leftover separators collapse; None when nothing meaningful is left; at most MAX_SCRUBBED_CHARS.

`LABELS` holds the words the scrub may put in place of a title from its own vocabulary ("shell", "Inbox",
"direct message", "Google Search"); everything else it returns is text of the title itself.

Pure and standard library only: schemas is the bottom layer. `scrub_title` takes the trimmed site rather than a
URL because the public-suffix rules live in stream_jobs/trim.py, which this layer must not import.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal, get_args

TitleMode = Literal["off", "scrubbed", "full"]
TITLE_MODES: tuple[TitleMode, ...] = get_args(TitleMode)
DEFAULT_TITLE_MODE: TitleMode = "scrubbed"

Kind = Literal["browser", "terminal", "editor", "document", "mail", "chat", "video", "files", "vault", "other"]
KINDS: tuple[Kind, ...] = get_args(Kind)

MAX_SCRUBBED_CHARS = 120
# Longer titles are cut, at whitespace, to their head and tail before any rule runs (the app's own suffix is
# at the end): every rule stays linear in a bounded text, and no token is cut in two to slip past a rule.
_MAX_INPUT_CHARS = 2048
# A label: what a site calls itself ("GitHub", "The New York Times"), not a headline or a query.
_MAX_LABEL_CHARS = 40
_MAX_LABEL_WORDS = 4

SHELL = "shell"
MESSAGE = "message"
FOLDER = "folder"


def _names(text: str) -> tuple[str, ...]:
    """A table row written as comma-separated names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


# ---------------------------------------------------------------------------------------------------------
# Apps, as collectors report them: process names (Linux /proc comm, at most 15 characters), WM_CLASS, macOS
# application names, Windows executables. Matched after normalisation (`_app_key`): lower case, spaces and
# "_" as "-", without directories, ".exe", ".app", ".bin", "-bin", and reverse-DNS prefixes (org.gnome.Evince).
# ---------------------------------------------------------------------------------------------------------
_APPS: dict[Kind, tuple[str, ...]] = {
    "browser": _names(
        "firefox, firefox-esr, mozilla-firefox, librewolf, waterfox, floorp, zen, zen-browser, tor-browser, "
        "torbrowser, mullvad-browser, chrome, google-chrome, chromium, chromium-browser, brave, brave-browser, "
        "msedge, microsoft-edge, safari, safari-technology-preview, opera, opera-gx, vivaldi, epiphany, gnome-web, "
        "falkon, konqueror, midori, qutebrowser, yandex, yandex-browser, arc, orion, thorium, seamonkey, palemoon, "
        "iexplore, min, duckduckgo"
    ),
    "terminal": _names(
        "gnome-terminal-server, gnome-terminal, konsole, xterm, uxterm, rxvt, urxvt, rxvt-unicode, alacritty, kitty, "
        "wezterm, wezterm-gui, terminal, iterm, iterm2, tilix, terminator, xfce4-terminal, foot, footclient, "
        "windowsterminal, wt, cmd, powershell, powershell-ise, pwsh, conhost, openconsole, mintty, st, st-256color, "
        "guake, yakuake, tilda, sakura, lxterminal, mate-terminal, qterminal, terminology, hyper, tabby, warp, "
        "ghostty, kgx, console, ptyxis, blackbox, contour, cool-retro-term, deepin-terminal, termite, putty, "
        "kitty-terminal, ghostty-terminal, rio"
    ),
    "editor": _names(
        "code, code-oss, codium, vscodium, code-insiders, visual-studio-code, cursor, windsurf, sublime-text, subl, "
        "sublime, gedit, texteditor, gnome-text-editor, kate, kwrite, gvim, vim, nvim, nvim-qt, neovide, emacs, "
        "emacs-gtk, xemacs, idea, pycharm, pycharm-community, pycharm-professional, goland, clion, webstorm, "
        "phpstorm, rider, rubymine, datagrip, dataspell, rustrover, fleet, android-studio, studio, notepad++, "
        "notepad, notepadqq, zed, zed-editor, atom, brackets, geany, mousepad, pluma, xed, featherpad, leafpad, "
        "textedit, bbedit, textmate, nova, xcode, devenv, eclipse, netbeans, qtcreator, kdevelop, lapce, obsidian, "
        "typora, marktext, ghostwriter, apostrophe, helix"
    ),
    "document": _names(
        "evince, papers, okular, acrord32, acrobat, adobe-acrobat, adobe-acrobat-reader, acrobat-reader, "
        "adobe-reader, zathura, sumatrapdf, preview, soffice, libreoffice, winword, excel, powerpnt, microsoft-word, "
        "microsoft-excel, microsoft-powerpoint, onenote, microsoft-onenote, xreader, atril, qpdfview, mupdf, "
        "foxit-reader, foxitpdfreader, foxitreader, foxit-pdf-reader, pdfxedit, pdf-xchange-editor, xournalpp, "
        "ebook-viewer, foliate, pages, numbers, keynote, wps, et, wpp, desktopeditors, onlyoffice, abiword, "
        "gnumeric, scribus, skim, pdf-expert, eog, loupe, gwenview, document-viewer"
    ),
    "mail": _names(
        "thunderbird, mozilla-thunderbird, betterbird, outlook, microsoft-outlook, olk, evolution, geary, mail, "
        "mailspring, kmail, claws-mail, spark, airmail, mailbird, em-client, postbox, sylpheed, trojita"
    ),
    "chat": _names(
        "slack, discord, discordptb, discordcanary, microsoft-teams, teams, ms-teams, teams-for-linux, msteams, "
        "telegram, telegramdesktop, telegram-desktop, org.telegram.desktop, signal, signal-desktop, element, "
        "element-desktop, riot, whatsapp, zapzap, zoom, zoom.us, zoom-workplace, skype, skypeforlinux, mattermost, "
        "mattermost-desktop, rocket.chat, wire, pidgin, hexchat, messages, facetime, webex, ciscowebex, viber, "
        "wechat, line, threema, keybase, gajim, dino, fractal, nheko, quassel, konversation, revolt, zulip, beeper, "
        "ferdium, franz, rambox"
    ),
    "video": _names(
        "vlc, mpv, totem, celluloid, quicktime-player, mpc-hc, mpc-be, smplayer, kodi, iina, potplayer, "
        "potplayermini, wmplayer, video.ui, haruna, dragon, parole, showtime, gnome-videos, videos, clapper, "
        "mplayer, infuse, plex, jellyfin"
    ),
    "files": _names(
        "nautilus, org.gnome.nautilus, dolphin, thunar, nemo, caja, pcmanfm, pcmanfm-qt, explorer, finder, files, "
        "spacefm, doublecmd, krusader, totalcmd, totalcmd64"
    ),
    "vault": _names(
        "keepassxc, keepass, keeweb, 1password, bitwarden, enpass, dashlane, lastpass, proton-pass, keeper, "
        "keeperpasswordmanager, pwsafe, passwordsafe, keychain-access, seahorse, secrets, gnome-passwords"
    ),
}
# Families of apps whose names carry a channel or version ("firefox-developer-edition", "jetbrains-pycharm-ce").
_APP_PREFIXES: tuple[tuple[str, Kind], ...] = (
    ("firefox", "browser"),
    ("google-chrome", "browser"),
    ("chromium", "browser"),
    ("brave-browser", "browser"),
    ("microsoft-edge", "browser"),
    ("msedge", "browser"),
    ("vivaldi", "browser"),
    ("opera-", "browser"),
    ("safari-", "browser"),
    ("jetbrains-", "editor"),
    ("code-", "editor"),
    ("sublime-text", "editor"),
    ("intellij-idea", "editor"),
    ("visual-studio", "editor"),
    ("android-studio", "editor"),
    ("emacs", "editor"),
    ("libreoffice", "document"),
    ("openoffice", "document"),
    ("adobe-acrobat", "document"),
    ("microsoft-word", "document"),
    ("microsoft-excel", "document"),
    ("microsoft-powerpoint", "document"),
    ("thunderbird", "mail"),
    ("microsoft-outlook", "mail"),
    ("microsoft-teams", "chat"),
    ("teams-", "chat"),
    ("discord", "chat"),
    ("telegram", "chat"),
    ("signal-", "chat"),
    ("whatsapp", "chat"),
    ("zoom-", "chat"),
    ("keepass", "vault"),
    ("1password", "vault"),
    ("bitwarden", "vault"),
)
# JetBrains-style IDEs put the project first and the file last; VS Code-style ones the file first and the
# project folder after it. In both, a lone name that is not a file is the project folder: a directory.
_PROJECT_LAST = frozenset(
    _names(
        "android-studio, clion, datagrip, dataspell, fleet, goland, idea, phpstorm, pycharm, pycharm-community, "
        "pycharm-professional, rider, rubymine, rustrover, studio, webstorm, xcode, zed, zed-editor"
    )
)
_PROJECT_FIRST = frozenset(
    _names(
        "atom, brackets, code, code-insiders, code-oss, codium, cursor, devenv, eclipse, kdevelop, lapce, netbeans, "
        "obsidian, qtcreator, subl, sublime, sublime-text, visual-studio-code, vscodium, windsurf"
    )
)
_RDNS_PREFIXES = frozenset(_names("app, ch, co, com, de, dev, eu, fr, im, info, io, me, net, org, tv, uk, us"))
# /proc/<pid>/comm holds at most 15 characters: "gnome-terminal-server" arrives as "gnome-terminal-".
_COMM_CHARS = 15


def _app_key(app: str) -> str:
    name = app.strip().replace("\\", "/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[\s_]+", "-", name)
    changed = True
    while changed:
        changed = False
        for suffix in (".exe", ".app", ".bin", "-bin", ".desktop", "-wrapped", ".sh"):
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                changed = True
    return name


def _build_app_table() -> tuple[dict[str, Kind], dict[str, Kind]]:
    exact: dict[str, Kind] = {}
    truncated: dict[str, Kind] = {}
    for kind, names in _APPS.items():
        for name in names:
            key = _app_key(name)
            exact[key] = kind
            if len(key) > _COMM_CHARS:
                truncated.setdefault(key[:_COMM_CHARS], kind)
    return exact, truncated


_APP_KINDS, _TRUNCATED_APP_KINDS = _build_app_table()
_CHANNEL_SUFFIX = re.compile(r"(?:-(?:stable|beta|dev|devel|nightly|canary|esr|insiders|unstable|preview|snap))+$")
_BITNESS_SUFFIX = re.compile(r"(?<=[a-z])(?:64|32|-x64|-x86)$")


@lru_cache(maxsize=4096)
def _app_identity(app: str) -> tuple[Kind, str]:
    """The app's kind and its key in the tables (the name it was found under)."""
    key = _app_key(app)
    candidates = [key, _CHANNEL_SUFFIX.sub("", key), _BITNESS_SUFFIX.sub("", key)]
    if "." in key and key.split(".", 1)[0] in _RDNS_PREFIXES:
        last = key.rsplit(".", 1)[1]
        candidates += [last, _CHANNEL_SUFFIX.sub("", last)]
    for candidate in candidates:
        kind = _APP_KINDS.get(candidate)
        if kind is not None:
            return kind, candidate
    for candidate in candidates:
        for prefix, kind in _APP_PREFIXES:
            if candidate.startswith(prefix):
                return kind, candidate
    if len(key) == _COMM_CHARS and key in _TRUNCATED_APP_KINDS:
        return _TRUNCATED_APP_KINDS[key], key
    return "other", key


def app_kind(app: str | None) -> Kind:
    """What kind of app a window belongs to, from its name as a collector reports it; "other" when unknown."""
    if not app or not isinstance(app, str):
        return "other"
    return _app_identity(app)[0]


def _editor_family(key: str) -> str:
    """Where an editor puts the file in its title: "project_last" (JetBrains: "project – file"),
    "project_first" (VS Code: "file - project - app"), or "plain" (no project shown: gedit, Notepad++)."""
    if key in _PROJECT_LAST or key.startswith(("jetbrains-", "intellij-", "android-studio")):
        return "project_last"
    if key in _PROJECT_FIRST or key.startswith(("code-", "visual-studio")):
        return "project_first"
    return "plain"


# ---------------------------------------------------------------------------------------------------------
# Text clean-up shared by every rule.
# ---------------------------------------------------------------------------------------------------------
_AS_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\u2028\u2029\u00a0\u2007\u202f\u3000"
# Controls, bidirectional formatting (which can make text display as other text), zero-width characters
# (Edge titles itself "Microsoft\u200b Edge") and the soft hyphen: none carries anything a title needs.
_INVISIBLE = (
    "\u00ad\u061c\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
_CLEAN = {ord(c): " " for c in _AS_SPACE} | {
    code: None for code in (*range(0x20), *range(0x7F, 0xA0), *map(ord, _INVISIBLE)) if chr(code) not in _AS_SPACE
}


_CUT_HEAD = re.compile(r"\S*$")
_CUT_TAIL = re.compile(r"^\S*")


def _clean(title: str) -> str:
    if len(title) > _MAX_INPUT_CHARS:
        half = _MAX_INPUT_CHARS // 2
        head, tail = title[:half], title[-half:]
        # Drop the token each cut went through: a cut token could slip past the rule meant for it.
        title = f"{_CUT_HEAD.sub('', head)} {_CUT_TAIL.sub('', tail)}"
    if not title.isprintable():  # nearly every title is: no controls, no invisible or odd spaces
        title = title.translate(_CLEAN)
    if not unicodedata.is_normalized("NFC", title):
        title = unicodedata.normalize("NFC", title)
    # The same ends as what is kept: each kind reads the title as a second scrub would read the first's result.
    return _tidy_edges(" ".join(title.split()))


# ---------------------------------------------------------------------------------------------------------
# The generic scrub.
# ---------------------------------------------------------------------------------------------------------
# Credentials come first: a token may hold "/", "=" or "@", which the rules for paths, pairs and addresses read.
_AUTH_HEADER = re.compile(
    r"(?i)(?<![\w-])(?:proxy-)?authori[sz]ation[\"']?\s*[:=]\s*"
    r"(?:(?:bearer|basic|digest|token|negotiate|ntlm|aws4-hmac-sha256)\s+)?[^\s,;'\"]+"
)
_BEARER = re.compile(
    r"(?i)(?<![\w-])(?:bearer\s+[A-Za-z0-9._~+/=-]{8,}|basic\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{12,}={0,2})"
)
_SECRET_KEY = (
    r"(?:pass(?:word|wd|phrase|code)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|auth|session|sessid|sid|sig|signature|code|key|credentials?|cookie|otp|pin)"
)
# `key=value` whose key names a secret anywhere in it (MYSQL_ROOT_PASSWORD=…, access_token=…): the pair goes.
_SECRET_PAIR = re.compile(
    rf"(?i)(?<![\w-])[\"']?(?:--?)?[\w.-]*{_SECRET_KEY}[\w.-]*[\"']?\s*=\s*(?:\"[^\"]*\"?|'[^']*'?|[^\s\"']+)"
)
_SECRET_LABEL_WORDS = ("pass", "pwd", "token", "secret", "api", "access", "pin", "mot de passe", "contraseña", "senha")
# `Password: hunter2`: only for keys that cannot be an ordinary word before a colon ("Key: …", "Code: …" can).
_SECRET_LABEL = re.compile(
    r"(?i)(?<![\w-])[\"']?(?:password|passwort|passwd|pwd|passcode|passphrase|mot de passe|contraseña|senha"
    r"|token|secret|api[ _-]?key|access[ _-]?token|pin)[\"']?\s*:\s*(?:\"[^\"]*\"?|'[^']*'?|[^\s\"']+)"
)
_PASSWORD_FLAG = re.compile(
    r"(?i)(?<![^\s(\[{\"'<«“‘])(?:--?(?:password|passwd|pass|pwd|token|secret|api-?key|auth(?:-token)?|access-token)"
    r"(?:\s*=\s*|\s+)(?:\"[^\"]*\"?|'[^']*'?|\S+)"
    r"|-p(?:\"[^\"]*\"?|'[^']*'?|\S+)|-p\s+(?:\"[^\"]*\"?|'[^']*'?|\S+)|(?:-u|--user)\s+\S*:\S*)"
)
_URL = re.compile(r"(?i)(?<![\w+.-])[a-z][a-z0-9+.-]{0,15}://[^\s<>\"'`]*")
_URL_PARTS = re.compile(r"(?i)([a-z][a-z0-9+.-]*)://(?:[^/?#\s@]*@)?(\[[0-9a-f:.]+\]|[^/?#:\s\\]*)(:\d+)?")
_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62}"
# An address without a scheme: a host (with a letter TLD) or localhost, and a path, query or fragment.
_BARE_URL = re.compile(rf"(?i)(?<![\w.@/-])(?:www\.)?({_DOMAIN}|localhost)(:\d{{1,5}})?[/?#][^\s<>\"'`]*")
_HOST_ONLY = re.compile(rf"(?i)(?:{_DOMAIN}|localhost|\[[0-9a-f:.]+\])(?::\d{{1,5}})?")
_EMAIL = re.compile(r"[^\s@<>()\[\]{}\"',;:`|]+@[^\s@<>()\[\]{}\"',;:`|]+")
_HANDLE = re.compile(r"(?<![\w@])@[\w.-]{2,}")
# Paths: everything up to the last separator goes; what follows it (the base name) stays. A directory may
# hold spaces, but not a title separator (" - "), so a path never runs into the rest of the title.
_DIR = r"(?:[^\s\\/:*?\"<>|](?:(?!\s[-–—|·•]\s)[^\\/:*?\"<>|\r\n])*?)?"
_WINDOWS_PATH = re.compile(rf"(?i)(?<![\w])[a-z]:[\\/](?:{_DIR}[\\/])*(?P<base>[^\s\\/]*)")
_UNC_PATH = re.compile(rf"(?<![\w.~/\\-])(?:\\\\|//)[^\s\\/]+[\\/](?:{_DIR}[\\/])*(?P<base>[^\s\\/]*)")
_POSIX_PATH = re.compile(
    r"(?<![\w.~/\\-])(?:~[\w.-]*|\.{1,2})?/(?=\S)(?:[^\s/](?:(?!\s[-–—|·•]\s)[^/\n])*?/|/)*(?P<base>[^\s/]*)"
)
_SEPARATORS_IN_PATH = re.compile(r"[\\/]+")
_RELATIVE_PATH = re.compile(r"(?<![\w.~/\\-])[\w.+-]+(?:/+[\w.+-]+)+/*")
_TOKEN_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/=_-]{20,}")
_HEX = re.compile(r"[0-9a-fA-F]{32,}")
_SUBWORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_PIECES = re.compile(r"[_-]+")
# Digits, single separators between them, optional "+" and parenthesised groups: "+44 20 7946 0958".
_DIGIT_RUN = re.compile(r"\+?(?:\(\d+\)|\d)(?:[ .\-]?(?:\(\d+\)|\d))*")
# Dates and times are not secrets, and name many files: 2026-05-12, 2026-05, 12.05.2026, 2026.05.12, 10.21.33.
_DATE = re.compile(
    r"(?:19|20)\d\d([-.])(?:0[1-9]|1[0-2])(?:\1(?:0[1-9]|[12]\d|3[01]))?"
    r"|(?:0?[1-9]|[12]\d|3[01])\.(?:0?[1-9]|1[0-2])\.(?:19|20)\d\d|(?:[01]?\d|2[0-3])\.[0-5]\d\.[0-5]\d"
)
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}|<\s*>|\"\s*\"|'\s*'|“\s*”|„\s*“|«\s*»|「\s*」|『\s*』|`\s*`")
_SEPARATOR = r"(?:[-–—|·•»›/:~]|::)"
_REPEATED_SEPARATORS = re.compile(rf"(\s{_SEPARATOR})(?:\s+{_SEPARATOR}(?=\s|$))+")
# At either end of what is kept: punctuation that only ever separates goes even when it touches a word
# (":Gmail"); characters a rule reads ("-" of a flag, "/", "\\", "~", "." of a path or a prompt) go only as
# tokens of their own ("- Gmail", "Saved to /"), so "--password x" or "~/notes" keep what marks them.
_EDGE_GLUED = " |·•»›:;,=+*&–—"
_EDGE_TOKEN = frozenset("-–—|·•»›:;,/\\=+~*&.")
_EDGE_ANY = _EDGE_TOKEN | set(_EDGE_GLUED)
_BRACKET_OPENERS = re.compile(r"[(\[{]")
_BRACKET_CHARS = re.compile(r"[()\[\]{}<>\"'“”„«»「」『』`]")
_MEANINGFUL = re.compile(r"[^\W_]")
_DIGIT = re.compile(r"\d")
# Six digits at most three characters apart ("(555)-(123)"): what any digit run needs, looked for first.
_SIX_DIGITS = re.compile(r"\d(?:\D{0,3}\d){5}")


def _secret_piece(piece: str) -> bool:
    """Whether one piece of a token run (between "_", "-" and "/") is random-looking rather than a name.

    Certain: 40+ characters mixing classes; three or more separate digit groups among letters (`a8Kx2Lm9`); a
    run of 6+ capitals where digits are too (`AKIAIOSFODNN7EXAMPLE`). Likely (tuned on real identifiers against
    random base62, base32 and base64 tokens): sub-words averaging under 2.5 letters, or three sub-words of one or
    two letters; names have long sub-words (`XMLHttpRequestHandler`, `Quarterly`, `getElementsByTagName`)."""
    if (
        len(piece) < 6
        or piece.isdigit()
        or (piece.isalpha() and (piece.islower() or piece.isupper() or piece.istitle()))
    ):
        return False  # too short to be a secret, a number, or a word in one case or capitalised
    if not _mixes_classes(piece):
        return False
    if len(piece) >= 40:
        return True
    subwords = _SUBWORD.findall(piece)
    letters = [w for w in subwords if not w[0].isdigit()]
    digit_groups = len(subwords) - len(letters)
    if digit_groups >= 3 or (digit_groups and any(len(w) >= 6 and w.isupper() for w in letters)):
        return True
    if not letters:
        return False
    return len(letters) / sum(map(len, letters)) > 0.4 or sum(len(w) <= 2 for w in letters) >= 3


def _secret_run(match: re.Match[str]) -> str:
    """The run without its random-looking parts. A run may span a path ("/home/tmpa8Xk2pQz9Lm/x"): only the
    parts between "/" that look random go, and the "/" stay, so the path rules still see every directory."""
    run = match.group()
    if len(run) >= 32 and _HEX.fullmatch(run):
        return ""
    parts = run.split("/")
    secret = [len(p) >= 6 and (bool(_HEX.fullmatch(p)) or any(map(_secret_piece, _PIECES.split(p)))) for p in parts]
    if not any(secret):
        return run
    # Base64 holds "/" too: next to a random part, any part mixing letter classes is taken for the rest of it.
    return "/".join("" if s or _mixes_classes(p) else p for p, s in zip(parts, secret, strict=True))


def _mixes_classes(text: str) -> bool:
    """Whether the text holds at least two of: lower-case letters, upper-case letters, digits."""
    return (text != text.upper()) + (text != text.lower()) + (_DIGIT.search(text) is not None) >= 2


def _digit_run(match: re.Match[str]) -> str:
    run = match.group()
    if sum(c.isdigit() for c in run) < 6 or _DATE.fullmatch(run):
        return run
    return ""


def _url_host(match: re.Match[str]) -> str:
    url = match.group()
    parts = _URL_PARTS.match(url)
    if parts is None:
        return ""
    scheme, host, port = parts.group(1).lower(), parts.group(2).lower(), parts.group(3) or ""
    if scheme == "file":
        return url[len(parts.group(1)) + 3 :]  # a local path: the path rules cut it to its base name
    host = host.removeprefix("www.")
    if not host:
        return ""
    return f"{host}{port}" if host == "localhost" or host.startswith("[") else host


def _path(match: re.Match[str]) -> str:
    """A path's base name. A directory may hold a space, so a path can run on over what follows it: when a
    word after such a space is a host or a random token ("/a/x.pdf example.com/secret?q=1"), the "base name"
    may be the rest of an address or a token, and goes too."""
    base = match.group("base")
    directories = match.group()[: match.start("base") - match.start()]
    if " " in directories:
        for word in directories.split(" ")[1:]:
            for part in _SEPARATORS_IN_PATH.split(word):
                run = _TOKEN_RUN.fullmatch(part)
                if (len(part) > 3 and _HOST_ONLY.fullmatch(part)) or (run and _secret_run(run) != part):
                    return ""
    return base


def _bare_url_host(match: re.Match[str]) -> str:
    host = match.group(1).lower().removeprefix("www.")
    return f"{host}{match.group(2) or ''}" if host == "localhost" else host


def _relative_path(match: re.Match[str]) -> str:
    path = match.group()
    parts = [p for p in path.split("/") if p]
    # Dates and fractions ("12/05/2026", "3/4") and pairs of short words ("I/O", "TCP/IP", "and/or").
    if all(p.isdigit() for p in parts) or (len(parts) == 2 and not path.endswith("/") and max(map(len, parts)) <= 3):
        return path
    return parts[-1] if parts and not path.endswith("/") else ""


def _tidy(text: str) -> str:
    """Leftovers of removals: empty brackets and quotes, doubled separators, separators at either end."""
    for _ in range(4):
        before = text
        if _BRACKET_CHARS.search(text):
            text = _EMPTY_BRACKETS.sub("", text)
        if _REPEATED_SEPARATORS.search(text):
            text = _REPEATED_SEPARATORS.sub(r"\1", text)
        text = _tidy_edges(" ".join(text.split()))
        if text == before:
            break
    return text


def _tidy_edges(text: str) -> str:
    if not text or (text[0] not in _EDGE_ANY and text[-1] not in _EDGE_ANY):
        return text  # nearly every text: a word at either end
    while True:
        before = text
        text = text.strip(_EDGE_GLUED)
        first, _, rest = text.partition(" ")
        if first and set(first) <= _EDGE_TOKEN:
            text = rest
        head, _, last = text.rpartition(" ")
        if last and set(last) <= _EDGE_TOKEN:
            text = head
        if text == before:
            return text


def _rules_once(text: str) -> str:
    """One pass of every rule, each behind a cheap test that it could match at all. The order matters:
    credentials and URLs first (a token holds "/", "=" and "@"); then paths with an unmistakable start ("C:\\",
    UNC, "/", "~/"), before addresses without a scheme, which a directory with a dot ("a 0.A0/") could pass
    for; relative paths ("acme/repo") only after those addresses ("github.com/acme/repo" is a host)."""
    lower = text.lower()
    if "auth" in lower:
        text = _AUTH_HEADER.sub("", text)
    if "bearer" in lower or "basic" in lower:
        text = _BEARER.sub("", text)
    if "://" in text:
        text = _URL.sub(_url_host, text)
    if ":\\" in text or ":/" in text:
        text = _WINDOWS_PATH.sub(_path, text)
    if "\\\\" in text or "//" in text:
        text = _UNC_PATH.sub(_path, text)
    if "/" in text:
        text = _POSIX_PATH.sub(_path, text)
    if ("." in text or "localhost" in lower) and ("/" in text or "?" in text or "#" in text):
        text = _BARE_URL.sub(_bare_url_host, text)
    if "=" in text:
        text = _SECRET_PAIR.sub("", text)
    if ":" in text and any(word in lower for word in _SECRET_LABEL_WORDS):
        text = _SECRET_LABEL.sub("", text)
    if "-p" in lower or "--" in text or "-u" in text:
        text = _PASSWORD_FLAG.sub("", text)
    if "@" in text:
        text = _HANDLE.sub("", _EMAIL.sub("", text))
    if len(text) >= 20:
        text = _TOKEN_RUN.sub(_secret_run, text)
    if "/" in text:
        text = _RELATIVE_PATH.sub(_relative_path, text)
    if _SIX_DIGITS.search(text):
        text = _DIGIT_RUN.sub(_digit_run, text)
    return text


def _scrub_text(text: str) -> tuple[str | None, bool]:
    """The generic scrub of clean text, and whether any rule removed something (tidying aside)."""
    removed = False
    # To a fixed point, so a second scrub changes nothing: a removal or a tidied bracket can join what was
    # apart ("a/(…)b" -> "a/b"), and the cap can end the text just before a rule's context.
    for _ in range(6):
        after = _rules_once(text)
        removed = removed or after != text
        after = _tidy(after)
        if len(after) > MAX_SCRUBBED_CHARS:
            cut = after[: MAX_SCRUBBED_CHARS + 1]
            space = cut.rfind(" ")
            after = _tidy(cut[:space] if space >= MAX_SCRUBBED_CHARS // 2 else cut[:MAX_SCRUBBED_CHARS])
        if after == text:
            break
        text = after
    if not _MEANINGFUL.search(text):
        return None, removed
    return text, removed


def _generic(text: str) -> str | None:
    return _scrub_text(text)[0]


# ---------------------------------------------------------------------------------------------------------
# Segments, labels and names shared by the kinds.
# ---------------------------------------------------------------------------------------------------------
_SEGMENTS = re.compile(rf"\s+{_SEPARATOR}\s+")
_COUNTER_STARTS = frozenset("([•*!●")
_LEADING_COUNTER = re.compile(r"(?:\(\d+\+?\)|\[\d+\+?\]|\d+\s*[•|]|[•*!●])\s*")
_TRAILING_COUNTER = re.compile(r"\s*(?:\(\d+\+?\)|\[\d+\+?\])$")
_BRACKET_GROUPS = re.compile(r"(?:^|\s+)(?:\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\})(?=\s|$)")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_FILE_NAME = re.compile(
    r"(?i).*[^\s.]\.[a-z0-9]{1,10}|\.[\w.-]+|makefile|dockerfile|containerfile|readme|license|licence|copying"
    r"|changelog|authors|rakefile|gemfile|procfile|justfile|vagrantfile|jenkinsfile|brewfile|pkgbuild|cmakelists"
)


# An app's own name ends its window titles; it is looked for only that near the end, so a long title costs
# no more than a short one.
_SUFFIX_WINDOW = 80


def _strip_suffix(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.search(text, max(0, len(text) - _SUFFIX_WINDOW))
    return text[: match.start()].strip() if match else text


def _without_app_name(names: re.Pattern[str], text: str, whole: bool = False) -> str:
    """The title without the app's own name as its last segment ("… - Mozilla Thunderbird", also a name
    holding a separator: "… - Code - OSS"); "" when the whole title is the name and `whole` says that counts."""
    end = len(text)
    for _ in range(2):
        cut = max(
            text.rfind(" - ", 0, end), text.rfind(" – ", 0, end), text.rfind(" — ", 0, end), text.rfind(" | ", 0, end)
        )
        if cut < 0:
            break
        if names.fullmatch(text, cut + 3):
            return text[:cut].strip()
        end = cut
    return "" if whole and names.fullmatch(text) else text


def _segments(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SEGMENTS.split(text)) if s]


def _strip_counters(text: str) -> str:
    if not text or (text[0] not in _COUNTER_STARTS and not text[0].isdigit() and text[-1] not in ")]"):
        return text  # nearly every text: no counter can start or end it
    for _ in range(3):
        lead = _LEADING_COUNTER.match(text)
        stripped = text[lead.end() :] if lead else text
        if stripped.endswith((")", "]")):
            stripped = _strip_suffix(_TRAILING_COUNTER, stripped)
        stripped = stripped.strip()
        if stripped == text:
            break
        text = stripped
    return text


def _without_brackets(text: str) -> str:
    if "(" not in text and "[" not in text and "{" not in text:
        return text
    for _ in range(3):
        stripped = _BRACKET_GROUPS.sub("", text).strip()
        if stripped == text:
            break
        text = stripped
    return text


def _word_count(text: str) -> int:
    # Scripts without spaces count about two characters to a word: a 10-character Chinese headline is long.
    words = text.split()
    if text.isascii():
        return len(words)
    return sum(max(1, (len(_CJK.findall(w)) + 1) // 2) for w in words)


def _base_name(text: str) -> str:
    text = text.rstrip("\\/")
    return text[max(text.rfind("/"), text.rfind("\\")) + 1 :].strip()


def _is_file_name(text: str) -> bool:
    return _FILE_NAME.fullmatch(text) is not None


def _squash(text: str) -> str:
    return "".join(filter(str.isalnum, text.casefold()))


# ---------------------------------------------------------------------------------------------------------
# Browsers.
# ---------------------------------------------------------------------------------------------------------
_BROWSER_NAMES = (
    r"Mozilla Firefox|Firefox(?: Developer Edition| Nightly| Beta| ESR)?|Google Chrome(?: Beta| Dev| Canary)?"
    r"|Chrome|Chromium|Brave(?: Browser)?|Microsoft Edge(?: Beta| Dev| Canary)?|Edge|Opera(?: GX)?|Vivaldi"
    r"|Safari|LibreWolf|Waterfox|Floorp|Zen Browser|Tor Browser|Mullvad Browser|Epiphany|GNOME Web|Falkon"
    r"|Konqueror|Midori|qutebrowser|Yandex Browser|Thorium|SeaMonkey|Pale Moon"
)
_PRIVATE = r"Private Browsing|Private|Incognito|InPrivate|Privates Fenster|Navigation privée|Navegación privada"
# The browser's own name (and private-window marker) as a title's last segment, or as the whole title.
_BROWSER_ONLY = re.compile(rf"(?i)(?:(?:{_BROWSER_NAMES})(?:\s*[-–—]?\s*\(?(?:{_PRIVATE})\)?)?|\(?(?:{_PRIVATE})\)?)")
# Chromium browsers name the profile before themselves ("… - Personal - Microsoft Edge"); the default names.
_BROWSER_PROFILE = re.compile(
    r"(?i)Personal|Work|Default|Guest|Profile \d+|Person \d+|\[?InPrivate\]?|Incognito|Persönlich|Arbeit|Gast"
    r"|Personnel|Professionnel|Travail|Invité|Trabajo|Invitado|Pessoal|Trabalho|Convidado|Personale|Lavoro|Ospite"
)
_MORE_PAGES = re.compile(r"(?i)\s+and \d+ more pages?$")
# Search-result pages end with the engine's phrase as their last segment ("<query> - Google Search"): the
# phrase, case-folded, names the engine, in every language the engine titles its pages in.
_SEARCH_PHRASES: dict[str, tuple[str, ...]] = {
    "Google Search": _names(
        "google search, google search results, google suche, google-suche, google 検索, google で検索, google 搜索, "
        "google 搜尋, google 검색, google zoeken, zoeken met google, google haku, google søk, google sök, "
        "google søgning, google szukaj, szukaj w google, google hledat, google keresés, google căutare, "
        "google αναζήτηση, google пошук, google поиск, поиск в google, google arama, google'da ara, "
        "recherche google, buscar con google, pesquisa google, pesquisa do google, cerca con google, ricerca google"
    ),
    "Bing": _names("bing, microsoft bing, bing search"),
    "DuckDuckGo": _names("duckduckgo"),
    "Yahoo Search": _names(
        "yahoo search, yahoo! search, yahoo search results, yahoo! search results, yahoo suche, yahoo recherche, "
        "yahoo búsqueda, yahoo!検索, yahoo! 検索"
    ),
    "Brave Search": _names("brave search"),
    "Ecosia": _names("ecosia"),
    "Startpage": _names("startpage, startpage search, startpage search results"),
    "Kagi": _names("kagi, kagi search"),
    "Qwant": _names("qwant"),
    "Yandex": _names("яндекс, yandex"),
    "Baidu": _names("百度搜索, 百度一下，你就知道"),
    "Naver": _names("네이버 검색, naver 검색, naver search, 네이버 통합검색"),
}
_SEARCH_SEGMENTS = {phrase: engine for engine, phrases in _SEARCH_PHRASES.items() for phrase in phrases}
# Engines whose phrase is not a segment of its own: "<query> at DuckDuckGo", "<query>_百度搜索", "<query> —
# Яндекс: нашлось 5 млн результатов".
_SEARCH_ENDINGS = re.compile(
    r"(?i)(?P<ddg>\s(?:at|bei|sur|en|su|em|в|op|på|w|na|auf|de|da)\s+DuckDuckGo)$|(?P<baidu>_百度搜索)$"
)
_YANDEX_RESULTS = re.compile(r"(?i)(?:Яндекс|Yandex)\s*[:：]")
_SEARCH_SITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"google\.(?:[a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})(?:/search)?"), "Google Search"),
    (re.compile(r"bing\.com(?:/(?:search|images|videos|news))?|cn\.bing\.com"), "Bing"),
    (re.compile(r"(?:html\.|lite\.)?duckduckgo\.com(?:/search)?"), "DuckDuckGo"),
    (re.compile(r"(?:[a-z]{2}\.)?search\.yahoo\.com|search\.yahoo\.co\.jp"), "Yahoo Search"),
    (re.compile(r"search\.brave\.com"), "Brave Search"),
    (re.compile(r"ecosia\.org"), "Ecosia"),
    (re.compile(r"startpage\.com"), "Startpage"),
    (re.compile(r"kagi\.com"), "Kagi"),
    (re.compile(r"qwant\.com"), "Qwant"),
    (re.compile(r"yandex\.(?:[a-z]{2,3}|com\.tr)|ya\.ru"), "Yandex"),
    (re.compile(r"baidu\.com"), "Baidu"),
    (re.compile(r"search\.naver\.com"), "Naver"),
)
# Sites that put their own name first, before what is on the page: "Amazon.com : wireless headphones" (the
# query), "GitHub - acme/secret-repo: …", "Reddit - Dive into anything".
_SITE_FIRST = re.compile(r"^(?:(Amazon\.[a-z]{2,3}(?:\.[a-z]{2})?)\s?:\s|(GitHub|Reddit) - )")


def _site_host(site: str | None) -> str | None:
    """The host part of a trimmed site (`google.com/maps` -> `google.com`); None for fixed labels."""
    if not site:
        return None
    host = site.strip().lower().split("/", 1)[0].removeprefix("www.")
    return host if host and _HOST_ONLY.fullmatch(host) else None


@lru_cache(maxsize=4096)
def _site_names(host: str) -> frozenset[str]:
    """What a page may call its site, squashed: "en.wikipedia.org" -> wikipedia, enwikipediaorg, enwikipedia…"""
    labels = host.split(":", 1)[0].split(".")
    return frozenset({*labels, _squash(".".join(labels)), _squash(".".join(labels[:-1]))} - {""})


def _matches_site(segment: str, host: str) -> bool:
    return _squash(segment) in _site_names(host)


_LABEL_TOKENS = re.compile(r"[A-Za-z0-9]{12,}")


def _label(segment: str) -> str | None:
    """The segment as a page label, if it reads as one: short, not a question or a lower-case phrase (a
    query), and untouched by the generic scrub (a scrubbed address counts when only its host is left)."""
    text, removed = _scrub_text(segment)
    if text is None:
        return None
    if removed:
        # Only a whole web address may lose something and still serve: as its host ("github.com/acme/x").
        address = _URL.fullmatch(segment) or _BARE_URL.fullmatch(segment)
        if address is None or segment.lower().startswith("file:") or not _HOST_ONLY.fullmatch(text):
            return None
    if len(text) > _MAX_LABEL_CHARS or _word_count(text) > _MAX_LABEL_WORDS or text.endswith("?"):
        return None
    if " " in text and any(c.isalpha() and c.lower() != c.upper() for c in text) and text == text.lower():
        return None
    if any(map(_secret_piece, _LABEL_TOKENS.findall(text))):
        return None  # no site calls itself by a random token ("Reset - a8Fk2Lm9Qx7Zp3Rt")
    return text


@lru_cache(maxsize=4096)
def _site_info(site: str) -> tuple[str | None, str | None]:
    """A site's search engine, if it is one, and its host; sites repeat, so this is looked up once each."""
    bare_site = site.strip().lower().removeprefix("www.")
    for pattern, engine in _SEARCH_SITES:
        if pattern.fullmatch(bare_site):
            return engine, _site_host(site)
    return None, _site_host(site)


_COUNTER_ENDS = _EDGE_ANY | set(")]")


def _normal_segment(segment: str) -> str:
    """A segment as every rule reads it: tidy ends, no counters ("(3) Inbox", ",0|0" -> "0")."""
    if segment and segment[0].isalpha() and segment[-1] not in _COUNTER_ENDS:
        return segment  # nearly every segment: a word first, neither punctuation nor a counter last
    for _ in range(4):
        normal = _strip_counters(_tidy_edges(segment))
        if normal == segment:
            break
        segment = normal
    return segment


def _stable_label(segment: str) -> str | None:
    """The segment's label, made a fixed point: a second scrub reads the label as a segment of its own."""
    for _ in range(3):
        label = _label(segment)
        if label is None or _normal_segment(label) == label:
            return label
        segment = _normal_segment(label)
    return None


def _browser(title: str, site: str | None) -> str | None:
    engine, host = _site_info(site) if site else (None, None)
    if engine is not None:
        return engine
    segments = [segment for segment in map(_normal_segment, _segments(title)) if segment]
    named_itself = False
    while segments and _BROWSER_ONLY.fullmatch(segments[-1]):
        segments.pop()
        named_itself = True
    if named_itself and len(segments) >= 2 and _BROWSER_PROFILE.fullmatch(segments[-1]):
        segments.pop()
    if not segments:
        return host
    segments[-1] = _strip_suffix(_MORE_PAGES, segments[-1])
    last = segments[-1].casefold()
    engine = _SEARCH_SEGMENTS.get(last)
    if engine is None and last.startswith(("яндекс", "yandex")) and _YANDEX_RESULTS.match(segments[-1]):
        engine = "Yandex"
    if engine is None and last.endswith(("duckduckgo", "百度搜索")):
        ending = _SEARCH_ENDINGS.search(segments[-1])
        engine = None if ending is None else "DuckDuckGo" if ending.lastgroup == "ddg" else "Baidu"
    if engine is not None:
        return engine
    first = _SITE_FIRST.match(title)
    if first:
        return first.group(1) or first.group(2)
    candidates: list[str] = []
    if host and len(segments) >= 2:
        candidates += [s for s in (segments[-1], segments[0]) if _matches_site(s, host)]
    candidates.append(segments[-1])
    for candidate in candidates:
        label = _stable_label(candidate)
        if label is None or _BROWSER_ONLY.fullmatch(label):
            continue
        first = _SITE_FIRST.match(label + " - ")
        return (first.group(1) or first.group(2)) if first else label
    return host


# ---------------------------------------------------------------------------------------------------------
# Terminals.
# ---------------------------------------------------------------------------------------------------------
_TERMINAL_NAMES = (
    r"Konsole|Terminal|GNOME Terminal|Tilix|Terminator|xterm|UXTerm|Alacritty|kitty|WezTerm|iTerm2?|Yakuake"
    r"|Guake|Ptyxis|Console|Warp|Hyper|Tabby|Ghostty|foot|QTerminal|LXTerminal|MATE Terminal|Xfce Terminal"
    r"|Terminology|PuTTY|mintty|rio"
)
_TERMINAL_NAME = re.compile(rf"(?i){_TERMINAL_NAMES}")
_TERMINAL_PARTS = re.compile(r"\s+(?:—|:)\s+")
_TERMINAL_SIZE = re.compile(r"\s+[-–—]\s+\d+\s?[×x]\s?\d+$")
_TERMINAL_PREFIXES = re.compile(
    r"(?i)^(?:(?:Administrator|Administrateur|Administrador|Amministratore|管理者)\s?:\s*"
    r"|(?:Command Prompt|Eingabeaufforderung|Invite de commandes|Símbolo del sistema|Prompt dei comandi"
    r"|Prompt de Comando|コマンド プロンプト)\s+-\s+|\[?\d+\]?:?\s+(?=\S))"
)
_SHELL_TITLES = frozenset(
    {
        SHELL,
        *_names(
            "-bash, -fish, -sh, -zsh, alacritty, bash, cmd, cmd.exe, command prompt, console, csh, dash, "
            "eingabeaufforderung, elvish, fish, foot, ghostty, gnome terminal, guake, hyper, invite de commandes, "
            "iterm, iterm2, kgx, kitty, konsole, ksh, login, lxterminal, mate terminal, mintty, nu, nushell, "
            "powershell, powershell.exe, prompt de comando, prompt dei comandi, ptyxis, pwsh, qterminal, rio, rxvt, "
            "sh, st, símbolo del sistema, tabby, tcsh, terminal, terminator, terminology, tilix, urxvt, uxterm, "
            "warp, wezterm, windows powershell, xfce terminal, xonsh, xterm, yakuake, zsh"
        ),
    }
)
_USER_AT_HOST = re.compile(r"^[\w.+-]+@[\w.-]+(?::|\s|$)\s*")
_VIM_TITLE = re.compile(r"(?i)\s[-–—]\s(N?VIM|GVIM)\d*$")
_JOB = re.compile(r"\s\((-?[\w.+-]{1,40})\)$")
_PROMPT = re.compile(r"(?i)^(?:PS\s+)?(?:[~/\\]|[a-z]:[\\/]|\\\\)|[$#%>]$")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_PROGRAM = re.compile(r"[A-Za-z0-9._+-]{1,40}")


def _terminal(title: str) -> str | None:
    text = title
    for _ in range(3):
        before = text
        text = _without_app_name(_TERMINAL_NAME, text)
        if text.endswith(("×", "x")) or text[-1:].isdigit():
            text = _strip_suffix(_TERMINAL_SIZE, text)
        prefix = _TERMINAL_PREFIXES.match(text)
        if prefix:
            text = text[prefix.end() :].strip()
        if text == before:
            break
    if not text or text.casefold() in _SHELL_TITLES:
        return SHELL
    vim = _VIM_TITLE.search(text)
    if vim:
        return "nvim" if vim.group(1).lower() == "nvim" else "vim"
    job = _JOB.search(text)
    if job and (not job.group(1).startswith("-") or job.group(1).casefold() in _SHELL_TITLES):
        text = job.group(1)
    # Konsole titles "dir : program"; macOS Terminal "dir — program — 80×24": the program comes last.
    parts = [p for p in _TERMINAL_PARTS.split(text) if p.strip()]
    if len(parts) >= 2:
        text = parts[-1].strip()
    text = _USER_AT_HOST.sub("", text).strip()
    if not text or _PROMPT.search(text) or text.casefold() in _SHELL_TITLES:
        return SHELL
    words = [w for w in text.split() if not _ENV_ASSIGNMENT.match(w)]
    if not words:
        return SHELL
    first = words[0].strip("\"'`")
    if _URL.match(first) or _BARE_URL.match(first) or "@" in first:
        return None  # an address is an argument, never a program
    scrubbed = _generic(first)
    if scrubbed is None:
        return None
    program = _base_name(scrubbed)
    program = program.removeprefix("-") if program.startswith("-") and len(program) > 1 else program
    if program.lower().endswith(".exe"):
        program = program[:-4]
    if program.casefold() in _SHELL_TITLES:
        return SHELL
    if not _PROGRAM.fullmatch(program) or program.isdigit() or program.startswith("-"):
        return None
    if program != scrubbed:  # a part of what was scrubbed: it must come back unchanged too
        again, removed = _scrub_text(program)
        if removed or again != program:
            return None
    return program


# ---------------------------------------------------------------------------------------------------------
# Editors and documents.
# ---------------------------------------------------------------------------------------------------------
_EDITOR_NAMES = (
    r"Visual Studio Code(?: - Insiders)?|VSCodium|Code - OSS|Code|Cursor|Windsurf|Sublime Text(?: \(UNREGISTERED\))?"
    r"|gedit|Text Editor|Kate|KWrite|GVIM\d*|VIM\d*|NVIM|Neovide|GNU Emacs(?: at \S+)?|Emacs|Notepad\+\+"
    r"|Notepad|Editor|Bloc-notes|Bloc de notas|Blocco note|Bloco de notas|Блокнот|メモ帳|记事本"
    r"|(?:PyCharm|IntelliJ IDEA|GoLand|CLion|WebStorm|PhpStorm|Rider|RubyMine|DataGrip|DataSpell|RustRover)"
    r"(?: (?:Community|Professional|Ultimate|Edition|CE|\d[\d.]*))*"
    r"|Fleet|Android Studio|Zed|Atom|Geany|Mousepad|Pluma|Xed|FeatherPad|Leafpad|Notepadqq|Brackets|Xcode"
    r"|Obsidian(?: v[\d.]+)?|Typora|MarkText|TextEdit|BBEdit|TextMate|Nova|Eclipse(?: IDE)?|NetBeans(?: IDE)?"
    r"(?: [\d.]+)?|Qt Creator|KDevelop|Lapce|Helix|Microsoft Visual Studio|Visual Studio(?: \d{4})?"
)
_EDITOR_NAME = re.compile(rf"(?i){_EDITOR_NAMES}")
_DOCUMENT_NAMES = (
    r"Microsoft Word|Word|Microsoft Excel|Excel|Microsoft PowerPoint|PowerPoint|OneNote|Microsoft OneNote"
    r"|LibreOffice(?: (?:Writer|Calc|Impress|Draw|Math|Base))?|OpenOffice(?:\.org)?(?: \w+)?"
    r"|Adobe Acrobat(?: Reader)?(?: (?:DC|Pro|Pro DC|Standard|XI|20\d\d))*|Acrobat Reader(?: DC)?"
    r"|SumatraPDF|Okular|Evince|Document Viewer|Dokumentenbetrachter|Visionneur de documents|Papers|Atril"
    r"|Xreader|zathura|Preview|Vorschau|Aperçu|Vista Previa|Pré-visualização|Anteprima|Foxit (?:PDF )?Reader"
    r"|Foxit PDF Editor|PDF-XChange (?:Editor|Viewer)|Pages|Numbers|Keynote|WPS Office|WPS Writer"
    r"|WPS Spreadsheets|WPS Presentation|ONLYOFFICE(?: Desktop Editors)?|AbiWord|Gnumeric|Scribus|Skim"
    r"|PDF Expert|Foliate|E-book viewer|Image Viewer|Eye of GNOME|Gwenview|qpdfview|MuPDF|Xournal\+\+"
)
_DOCUMENT_NAME = re.compile(rf"(?i){_DOCUMENT_NAMES}")
_DOCUMENT_STATUS = re.compile(
    r"(?i)^(?:Saved|Saving…?|Saving\.\.\.|Saved to (?:this PC|OneDrive|SharePoint)(?: - [^-]+)?|AutoSave (?:On|Off)"
    r"|Read-Only|Compatibility Mode|Protected View|Repaired|AutoRecovered|Last Modified:?.*|Gespeichert"
    r"|Wird gespeichert…?|Schreibgeschützt|Kompatibilitätsmodus|Geschützte Ansicht|Enregistré|Lecture seule"
    r"|Mode de compatibilité|Mode protégé|Guardado|Sólo lectura|Solo lectura|Modo de compatibilidad"
    r"|Vista protegida|Salvo|Somente leitura|Modo de compatibilidade|Salvato|Sola lettura"
    r"|Modalità compatibilità|Page \d+ of \d+|Seite \d+ von \d+|Page \d+ sur \d+|Página \d+ de \d+"
    r"|Pagina \d+ di \d+|\d+ / \d+)$"
)
_DIRTY_LEADING = "●•○◦◉✱*+ "
_DIRTY_TRAILING = re.compile(r"(?:\s*[●•○◦✱*]|\s+\+|\s+\[\+\]|\s+\[(?:modified|geändert|modifié)\])+$")


def _undirtied(text: str) -> str:
    """Without an editor's unsaved-changes markers ("● main.py", "*notes.txt", "todo.txt +", "a [modified]")."""
    text = text.lstrip(_DIRTY_LEADING)
    return _strip_suffix(_DIRTY_TRAILING, text) if text and text[-1] in "●•○◦✱*+]" else text


_EDITOR_UI = re.compile(
    r"(?i)Welcome|Get Started|Settings|Keyboard Shortcuts|Extensions?|Extension: [\w .+-]{1,30}|Release Notes"
    r"|Untitled(?:-\d+)?|Walkthrough|Interactive(?:-\d+)?|Search|Source Control|Run and Debug|Problems|Output"
    r"|Debug Console|Running Extensions|Process Explorer|Editor Playground|Settings Sync|Plugins|Preferences"
    r"|New Project|Welcome to \w+(?: \w+)?|Project Structure|Terminal|Merge Editor|Untitled Document(?: \d+)?"
)


def _editor_like(title: str, names: re.Pattern[str], family: str) -> str | None:
    # Brackets first ("… - Notepad++ [Administrator]", "plan.txt (~/secret) - gedit"), then the app's name,
    # then what either left: markers of unsaved changes and brackets behind them ("todo.txt + (~/x) - GVIM").
    text = _without_app_name(names, _without_brackets(title))
    text = _undirtied(_without_brackets(_undirtied(text)))
    segments = [s for s in map(_undirtied, _segments(text)) if s]
    if names is _DOCUMENT_NAME:
        segments = [s for s in segments if not _DOCUMENT_STATUS.fullmatch(s)]
    if not segments:
        return None
    # Which segment names the file is read from the raw base names; only that segment is then scrubbed, and
    # its base name taken from what the scrub left (an address becomes its host, a path its base name).
    raw = [_base_name(x) for x in segments]
    files = [i for i, name in enumerate(raw) if name and _is_file_name(name)]
    if files:
        index = files[-1] if family == "project_last" else files[0]
    else:
        index = len(raw) - 1 if family == "project_last" else 0
    scrubbed = _generic(segments[index])
    name = _scrubbed_base_name(scrubbed) if scrubbed else None
    # A lone name in an IDE that shows its project folder is the folder: a directory, never kept.
    if name and family != "plain" and not (_is_file_name(name) or _EDITOR_UI.fullmatch(name)):
        return None
    return name


def _scrubbed_base_name(scrubbed: str) -> str | None:
    """The base name of scrubbed text; scrubbed again only when cutting it changed it."""
    name = _base_name(scrubbed)
    return name if name == scrubbed else _generic(name) if name else None


# ---------------------------------------------------------------------------------------------------------
# Mail.
# ---------------------------------------------------------------------------------------------------------
_MAIL_NAMES = (
    r"Mozilla Thunderbird|Thunderbird|Betterbird|Microsoft Outlook|Outlook|Evolution|Geary|Mail|Mailspring"
    r"|KMail|Claws Mail|Spark|Airmail|eM Client|Mailbird|Postbox|Sylpheed|Trojitá"
)
_MAIL_NAME = re.compile(rf"(?i){_MAIL_NAMES}")
_MAIL_FOLDERS: dict[str, tuple[str, ...]] = {
    "Inbox": _names(
        "inbox, all inboxes, unified inbox, inboxes, posteingang, alle posteingänge, boîte de réception, "
        "boite de réception, bandeja de entrada, recibidos, caixa de entrada, posta in arrivo, 受信トレイ, входящие, "
        "收件箱, 收件匣, postvak in, odebrane, gelen kutusu"
    ),
    "Sent": _names(
        "sent, sent items, sent mail, sent messages, gesendet, gesendete elemente, gesendete objekte, envoyés, "
        "éléments envoyés, messages envoyés, enviados, elementos enviados, itens enviados, posta inviata, inviata, "
        "inviati, 送信済み, 送信済みアイテム, 送信済みメール, отправленные, 已发送, 已发邮件, 寄件備份, verzonden, "
        "verzonden items, wysłane"
    ),
    "Drafts": _names(
        "drafts, draft, entwürfe, brouillons, borradores, rascunhos, bozze, 下書き, черновики, 草稿箱, 草稿, "
        "concepten, kopie robocze"
    ),
    "Archive": _names("archive, archives, archiv, archivo, arquivo, archivio, アーカイブ, архив, 归档, archief"),
    "Spam": _names(
        "spam, junk, junk email, junk e-mail, junk mail, bulk, junk-e-mail, unerwünscht, courrier indésirable, "
        "indésirables, correo no deseado, lixo eletrônico, posta indesiderata, 迷惑メール, спам, 垃圾邮件, "
        "ongewenste e-mail"
    ),
    "Trash": _names(
        "trash, deleted items, deleted messages, bin, papierkorb, gelöschte elemente, corbeille, éléments supprimés, "
        "papelera, elementos eliminados, lixeira, lixo, itens excluídos, cestino, posta eliminata, ごみ箱, "
        "削除済みアイテム, корзина, удалённые, удаленные, 垃圾箱, 已删除, 已删除邮件, prullenbak, verwijderde items, "
        "kosz"
    ),
    "Outbox": _names(
        "outbox, postausgang, boîte d'envoi, bandeja de salida, caixa de saída, posta in uscita, 送信トレイ, "
        "исходящие, 发件箱, postvak uit"
    ),
    "All Mail": _names(
        "all mail, alle nachrichten, tous les messages, todos, tutti i messaggi, すべてのメール, вся почта"
    ),
    "Starred": _names(
        "starred, flagged, markiert, suivis, destacados, com estrela, speciali, スター付き, помеченные, 已加星标"
    ),
    "Important": _names("important, wichtig, importants, importantes, importanti, 重要, важное"),
    "Calendar": _names("calendar, kalender, calendrier, calendario, calendário, agenda, カレンダー, календарь, 日历"),
    "Contacts": _names(
        "contacts, address book, people, adressbuch, kontakte, carnet d'adresses, contactos, contatti, contatos, "
        "連絡先, контакты, 联系人, personen"
    ),
    "Tasks": _names("tasks, aufgaben, tâches, tareas, attività, tarefas, タスク, задачи, 任务"),
    "Settings": _names(
        "settings, preferences, account settings, options, einstellungen, konten-einstellungen, paramètres, "
        "configuración, impostazioni, configurações, 設定, настройки, 设置"
    ),
}
_MAIL_LABELS = {name.casefold(): label for label, names in _MAIL_FOLDERS.items() for name in (label, *names)}
_MAIL_COUNTS = re.compile(r"(?i)\s*(?:[-–—,]\s*)?\d+\s+(?:unread|ungelesen|non lus?|no leídos?|não lidas?|non letti?)$")


def _mail(title: str) -> str | None:
    text = _strip_counters(_without_app_name(_MAIL_NAME, title, whole=True))
    if not text:
        return None
    for segment in _segments(text):
        key = _MAIL_COUNTS.sub("", _strip_counters(_without_brackets(segment))).strip().casefold()
        label = _MAIL_LABELS.get(key)
        if label is not None:
            return label
    return MESSAGE


# ---------------------------------------------------------------------------------------------------------
# Chat.
# ---------------------------------------------------------------------------------------------------------
_CHAT_NAMES = (
    r"Slack|Discord|Microsoft Teams(?: \((?:work or school|free)\))?|Teams|Telegram|Telegram Desktop|Signal"
    r"|Element|WhatsApp|Zoom|Zoom Workplace|Zoom Cloud Meetings|Skype™?|Mattermost|Rocket\.Chat|Webex|Wire"
    r"|Viber|WeChat|LINE|Threema|Keybase|Zulip|Beeper|Ferdium|Franz|Rambox|Revolt|Messages|FaceTime"
)
_CHAT_APP_SEGMENT = re.compile(rf"(?i)(?:{_CHAT_NAMES})(?:\s*[\(\[]\d+\+?[\)\]])?")
_CHAT_KINDS = frozenset({"channel", "direct message", "thread", "call", "meeting", "calendar"})
_CHAT_DM = re.compile(r"(?i)\((?:DM|Direct Message|Group DM|Direktnachricht|Message direct|Mensaje directo)\)")
_CHAT_CHANNEL = re.compile(r"(?i)(?:^|\s)#\S|\((?:Channel|Private channel|Kanal|Canal|Canale|Privater Kanal)\)")
_CHAT_THREAD = re.compile(r"(?i)^(?:Threads?|Thread in|Fil de discussion|Hilo|Fios|Thread|Unterhaltungen)\b")
_CHAT_MEETING = re.compile(
    r"(?i)\b(?:meeting|meetings|webinar|besprechung|réunion|reunión|riunione|reunião|встреча|meet)\b|会議|ミーティング|会议"
)
_CHAT_CALL = re.compile(r"(?i)\b(?:call|huddle|anruf|appel|llamada|chiamata|chamada|звонок|созвон)\b|通話|通话")
_CHAT_DM_VIEW = re.compile(r"(?i)^(?:Chats?|Direct messages|DMs|Direktnachrichten|Messages directs|Mensajes directos)$")
_CHAT_CALENDAR = re.compile(r"(?i)^(?:Calendar|Kalender|Calendrier|Calendario)$")


def _chat(title: str) -> str | None:
    segments = [_strip_counters(s) for s in _segments(title)]
    segments = [s for s in segments if s and not _CHAT_APP_SEGMENT.fullmatch(s)]
    if not segments:
        return None
    text = " - ".join(segments)
    if text.casefold() in _CHAT_KINDS:
        return text.casefold()
    if _CHAT_DM.search(text):
        return "direct message"
    if _CHAT_CHANNEL.search(text):
        return "channel"
    if _CHAT_THREAD.search(segments[0]):
        return "thread"
    if _CHAT_MEETING.search(text):
        return "meeting"
    if _CHAT_CALL.search(text):
        return "call"
    if any(s.startswith("@") for s in segments) or _CHAT_DM_VIEW.fullmatch(segments[0]):
        return "direct message"
    if _CHAT_CALENDAR.fullmatch(segments[0]):
        return "calendar"
    return None


# ---------------------------------------------------------------------------------------------------------
# Video players, file managers, password managers.
# ---------------------------------------------------------------------------------------------------------
_VIDEO_NAMES = (
    r"VLC media player|VLC|mpv|MPC-HC(?: x64)?|MPC-BE(?: x64)?|Media Player Classic(?: Home Cinema)?|SMPlayer"
    r"|Celluloid|Videos|Totem|QuickTime Player|IINA|PotPlayer|Kodi|Movies & TV|Films & TV|Media Player"
    r"|Windows Media Player|Haruna|Dragon Player|Parole|Showtime|Clapper|MPlayer"
)
_VIDEO_NAME = re.compile(rf"(?i){_VIDEO_NAMES}")
_MEDIA_FILE = re.compile(
    r"(?i).*[^\s.]\.(?:mkv|mp4|m4v|avi|mov|webm|flv|wmv|mpg|mpeg|ts|m2ts|mts|vob|ogv|3gp|divx|rmvb|iso|mp3|flac"
    r"|ogg|oga|opus|wav|m4a|aac|mka|wma|aiff?|alac)"
)
_FILES_NAMES = (
    r"Files|Dateien|Fichiers|Archivos|Arquivos|File|Nautilus|Dolphin|Thunar|Nemo|Caja|PCManFM(?:-Qt)?"
    r"|File Explorer|Explorer|Datei-Explorer|Explorateur de fichiers|Explorador de archivos|Esplora file"
    r"|Explorador de Arquivos|Проводник|エクスプローラー|Finder|Double Commander|Krusader|Total Commander"
)
_FILES_NAME = re.compile(rf"(?i){_FILES_NAMES}")
_KNOWN_FOLDERS: dict[str, tuple[str, ...]] = {
    "Home": _names(
        "home, home folder, persönlicher ordner, dossier personnel, carpeta personal, pasta pessoal, cartella home, "
        "start, startseite, accueil, inicio, início"
    ),
    "Documents": _names("documents, dokumente, documentos, documenti, ドキュメント, документы, 文档"),
    "Downloads": _names(
        "downloads, téléchargements, descargas, transferências, download, ダウンロード, загрузки, 下载"
    ),
    "Desktop": _names(
        "desktop, schreibtisch, bureau, escritorio, área de trabalho, scrivania, デスクトップ, рабочий стол, 桌面"
    ),
    "Pictures": _names("pictures, bilder, images, imágenes, imagens, immagini, ピクチャ, изображения, 图片"),
    "Music": _names("music, musik, musique, música, musica, ミュージック, музыка, 音乐"),
    "Videos": _names("videos, vidéos, vídeos, video, ビデオ, видео, 视频"),
    "Trash": _names(
        "trash, recycle bin, papierkorb, corbeille, papelera, papelera de reciclaje, lixeira, cestino, ゴミ箱, "
        "корзина, 回收站"
    ),
    "Recent": _names(
        "recent, recents, recent files, zuletzt verwendet, récents, recientes, recentes, recenti, 最近使用したファイル"
    ),
    "This PC": _names(
        "this pc, dieser pc, ce pc, este equipo, este computador, questo pc, computer, my computer, este pc"
    ),
    "Quick access": _names("quick access, schnellzugriff, accès rapide, acceso rápido, acesso rápido, accesso rapido"),
    "Other Locations": _names(
        "other locations, andere orte, autres emplacements, otras ubicaciones, network, netzwerk, réseau, red"
    ),
    "Starred": _names("starred, favorites, favourites, favoriten, favoris, favoritos, preferiti"),
    "Applications": _names("applications, programme, programs, apps"),
    "Gallery": _names("gallery, galerie, galería"),
    "AirDrop": _names("airdrop"),
    "iCloud Drive": _names("icloud drive"),
    "OneDrive": _names("onedrive"),
}
_FOLDER_LABELS = {name.casefold(): label for label, names in _KNOWN_FOLDERS.items() for name in (label, *names)}
_VAULT_NAMES = (
    r"KeePassXC|KeePass(?: Password Safe)?|KeeWeb|1Password(?: \d+)?|Bitwarden|Enpass|Dashlane|LastPass"
    r"|Proton Pass|Keeper|Password Safe|Passwords|Keychain Access|Seahorse|Passwords and Keys|Secrets"
)
_VAULT_NAME = re.compile(rf"(?i){_VAULT_NAMES}")
_VAULT_FILE = re.compile(r"(?i).*[^\s.]\.(?:kdbx|kdb|psafe3|dat|1pif|opvault|agilekeychain|keychain-db|keychain|safe)")


def _video(title: str) -> str | None:
    text = _without_brackets(_without_app_name(_VIDEO_NAME, title, whole=True))
    for segment in _segments(text):
        name = _generic(segment) if "://" not in segment else None
        name = _scrubbed_base_name(name) if name else None
        if name and _MEDIA_FILE.fullmatch(name):
            return name
    return None


def _files(title: str) -> str | None:
    text = _strip_counters(_without_app_name(_FILES_NAME, title, whole=True))
    if not text:
        return None
    name = _base_name(text) or text
    label = _FOLDER_LABELS.get(name.casefold())
    if label is None and text[:1] in "~/\\" and not name.strip("~/\\"):
        label = "Home"
    return label or FOLDER


def _vault(title: str) -> str | None:
    text = _without_brackets(_without_app_name(_VAULT_NAME, title, whole=True))
    for segment in _segments(_undirtied(text)):
        name = _generic(_undirtied(segment))
        name = _scrubbed_base_name(name) if name else None
        if name and _VAULT_FILE.fullmatch(name):
            return name
    return None


# ---------------------------------------------------------------------------------------------------------
# The public API.
# ---------------------------------------------------------------------------------------------------------
# Every word the scrub may put in place of a title from its own vocabulary, never from the title itself
# ("shell", "Inbox", "direct message", "Google Search", …): a dashboard may translate them.
LABELS: frozenset[str] = frozenset(
    {SHELL, MESSAGE, FOLDER, "vim", "nvim", *_CHAT_KINDS, *_MAIL_FOLDERS, *_KNOWN_FOLDERS, *_SEARCH_PHRASES}
)


def scrub_title(title: str | None, app: str | None, site: str | None = None) -> str | None:
    """The window title as it may be kept, for a window of `app`; None when nothing is worth keeping.

    `site` is the page's trimmed site (stream_jobs/trim.py `site_of`), for browser windows; fixed labels such
    as "(local file)" are accepted and never kept. Never raises; idempotent; at most MAX_SCRUBBED_CHARS long."""
    if not title or not isinstance(title, str):
        return None
    text = _clean(title)
    if not text:
        return None
    kind, key = _app_identity(app) if app and isinstance(app, str) else ("other", "")
    if kind == "other":
        return _generic(text)  # its own fixed point
    kept = _kept(text, kind, key, site)
    # A removal can leave what a second scrub reads differently: a separator ("0 x@y | 0" -> "0 | 0") or a
    # bracket. Such a result is read again, to a fixed point; one that has none keeps nothing.
    for _ in range(3):
        if kept is None or not (_SEGMENTS.search(kept) or _BRACKET_OPENERS.search(kept)):
            return kept
        again = _kept(kept, kind, key, site)
        if again == kept:
            return kept
        kept = again
    return None


def _kept(text: str, kind: Kind, key: str, site: str | None) -> str | None:
    if kind == "browser":
        return _browser(text, site)
    if kind == "terminal":
        return _terminal(text)
    if kind == "editor":
        return _editor_like(text, _EDITOR_NAME, _editor_family(key))
    if kind == "document":
        return _editor_like(text, _DOCUMENT_NAME, "plain")
    if kind == "mail":
        return _mail(text)
    if kind == "chat":
        return _chat(text)
    if kind == "video":
        return _video(text)
    if kind == "files":
        return _files(text)
    return _vault(text)


def apply_title_mode(
    title: str | None, app: str | None, mode: TitleMode = DEFAULT_TITLE_MODE, site: str | None = None
) -> str | None:
    """The title as the account's title mode keeps it: "off" none, "full" as captured, "scrubbed" (the
    default) through `scrub_title`."""
    if mode == "scrubbed":
        return scrub_title(title, app, site)
    if mode == "off":
        return None
    if mode == "full":
        return title
    raise ValueError(f"title mode must be one of {', '.join(TITLE_MODES)}, got {mode!r}")
