"""What a statement may touch through the embedded warehouse server (docs/least-privilege.md).

chDB is clickhouse-local: it has no user_files sandbox and no access control, so a statement could read or write
any file, address, process or Python object the server can reach. The server therefore decides what a statement
touches before running it. It does not read the text it was sent (quoting, comments, case and escapes have many
spellings): it asks the engine to parse the statement and print it back (`formatQuery`), and checks that
canonical form, where comments are gone, every name is printed one way (back-quoted, with escapes, only when it
must be) and keywords are upper case. The engine then runs the statement it parsed the same way.

The rules allow, not forbid, wherever the list is short: the statement kinds the product uses, the table engines
that keep data inside the warehouse, the system tables that describe the schema, the table functions that
generate rows. Any other table function (the engine's own list, so a new engine version's are refused too) and
the functions that read files or dictionaries are refused anywhere in the statement, and so is any setting that
names a path, a URL or another SQL dialect. `refusal` is pure: the server gives it the canonical text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# The lexer of ClickHouse SQL the server needs: quotes with their escapes, comments, words, the rest one
# character at a time. Also used to find where an INSERT's inline data begins.
TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z))
      | (?P<quoted>'(?:[^'\\]|\\.|'')*(?:'|\Z)|"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`\\]|\\.|``)*(?:`|\Z))
      | (?P<word>[^\W\d]\w*)
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)

# What a statement may begin with: reading, writing the product's tables, its migrations and deletions.
_STATEMENTS = frozenset(
    {"SELECT", "WITH", "INSERT", "ALTER", "CREATE", "DROP", "OPTIMIZE", "DELETE", "EXISTS", "SHOW", "DESCRIBE",
     "DESC", "SET", "USE", "RENAME", "TRUNCATE", "EXPLAIN"}
)  # fmt: skip
_CREATABLE = frozenset({"TABLE", "DATABASE", "VIEW", "MATERIALIZED"})  # not DICTIONARY, FUNCTION, USER ...
_SHOWABLE = frozenset({"TABLES", "DATABASES", "CREATE", "COLUMNS"})  # not PROCESSLIST, GRANTS, USERS ...
# Table engines whose data stays in the warehouse's own directory.
_ENGINE = re.compile(r"(?:\w*MergeTree|Memory|Null|Log|TinyLog|StripeLog|Set|Join|View|MaterializedView|Atomic)")
_SCHEMA_DATABASES = frozenset({"system", "information_schema", "INFORMATION_SCHEMA"})
# What of the system database a client needs: the schema (clickhouse-connect reads system.settings on connect;
# migrations read system.tables), mutations' and merges' progress, and the row generators.
_SYSTEM_TABLES = frozenset(
    {"one", "numbers", "numbers_mt", "zeros", "settings", "tables", "columns", "databases", "parts",
     "mutations", "merges", "functions", "table_functions", "formats", "data_type_families", "time_zones",
     "build_options"}
)  # fmt: skip
# Table functions that only generate rows (or read the statement itself).
_GENERATORS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "primes", "values",
     "sqlstandardvalues", "input", "null", "view", "generaterandom", "format"}
)  # fmt: skip
# Scalar functions that reach outside the statement: a file's contents, a dictionary's source, a model file.
_OUTSIDE_FUNCTIONS = re.compile(r"(?:file|dict\w*|joinget\w*|catboostevaluate|getclienthttpheader)")
# Settings that name a path, a URL or a parser: a schema or template file, a registry, an error log, the dialect.
_OUTSIDE_SETTINGS = re.compile(
    r"\w*(?:dialect|format_schema|format_template|schema_registry|file_path|output_format_schema|outfile|"
    r"introspection|url_base|engine_file|engine_url|http_allow)\w*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Name:
    text: str  # unquoted
    quoted: bool


def names_and_symbols(canonical: str) -> Iterator[Name | str]:
    """The canonical statement's words and quoted names as `Name`s, other symbols as strings; literals and
    whitespace left out."""
    for token in TOKEN.finditer(canonical):
        kind, text = token.lastgroup, token.group()
        if kind == "word":
            yield Name(text, quoted=False)
        elif kind == "quoted" and text[0] in '`"':
            yield Name(re.sub(r"\\(.)", r"\1", text[1:-1]), quoted=True)
        elif kind == "other":
            yield text


def refusal(canonical: str, table_functions: frozenset[str]) -> str | None:
    """Why the statement (in the engine's canonical form) may not run here, or None. `table_functions` are the
    engine's, lower case."""
    tokens = list(names_and_symbols(canonical))
    words = [t.text.upper() for t in tokens if isinstance(t, Name) and not t.quoted]
    if not words or words[0] not in _STATEMENTS:
        return f"{words[0] if words else 'this'} statements are not available through the warehouse server"
    if words[0] == "CREATE":
        made = next((w for w in words[1:] if w not in ("OR", "REPLACE", "TEMPORARY", "IF", "NOT", "EXISTS")), "")
        if made not in _CREATABLE:
            return f"CREATE {made} is not available through the warehouse server"
    if words[0] == "SHOW" and (len(words) < 2 or words[1] not in _SHOWABLE):
        return f"SHOW {words[1] if len(words) > 1 else ''} is not available through the warehouse server".strip()
    for word in ("INFILE", "OUTFILE"):
        if word in words:
            return f"{word} is not available through the warehouse server"
    for n, token in enumerate(tokens[:-2]):
        # `{t:Identifier}` takes a table's name from a query parameter, where no rule here would see it.
        if (
            token == "{"
            and tokens[n + 2] == ":"
            and any(isinstance(t, Name) and t.text.lower() == "identifier" for t in tokens[n + 3 : n + 6])
        ):
            return "query parameters of type Identifier are not available through the warehouse server"
    for n, token in enumerate(tokens):
        if not isinstance(token, Name):
            continue
        following = tokens[n + 1] if n + 1 < len(tokens) else None
        after = tokens[n + 2] if n + 2 < len(tokens) else None
        name = token.text.lower()
        if following == "(":
            if (name in table_functions and name not in _GENERATORS) or _OUTSIDE_FUNCTIONS.fullmatch(name):
                return f"{token.text}() is not available through the warehouse server"
        if _OUTSIDE_SETTINGS.fullmatch(token.text):
            return f"the setting {token.text} is not available through the warehouse server"
        if token.text in _SCHEMA_DATABASES:
            if following == "." and isinstance(after, Name):
                if token.text != "system" or after.text not in _SYSTEM_TABLES:
                    return f"{token.text}.{after.text} is not available through the warehouse server"
            elif words[0] == "USE":
                return f"the database {token.text} is not available through the warehouse server"
        if not token.quoted and token.text.upper() == "ENGINE" and following == "=" and isinstance(after, Name):
            if not _ENGINE.fullmatch(after.text):
                return f"the {after.text} engine is not available through the warehouse server"
    return None


def setting_refusal(names: list[str]) -> str | None:
    """Why settings given beside a statement (in the URL, or kept by a session) may not be used, or None."""
    for name in names:
        if _OUTSIDE_SETTINGS.fullmatch(name):
            return f"the setting {name} is not available through the warehouse server"
    return None


def database_refusal(database: str) -> str | None:
    if database in _SCHEMA_DATABASES:
        return f"the database {database} is not available through the warehouse server"
    return None
