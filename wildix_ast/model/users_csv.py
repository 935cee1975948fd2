"""WMS Users > Export CSV / Import CSV: the user table as a CSV file with the seed's columns.

The columns are the WMS user table's (type, name, login, extension, office and fax DID,
email, mobile, dialplan, fax dialplan, language, group, department); an empty cell is an
unset field (its default). Passwords and preferences are never in the file: an import keeps
the stored ones. A cell a spreadsheet would run as a formula (a name starting with '=', '+',
'-' or '@') is exported behind an apostrophe, which the import takes off again."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from wildix_ast.errors import Problem, SettingsError
from wildix_ast.model.user_merge import Incoming
from wildix_ast.model.users import User

COLUMNS = ("type", "name", "login", "extension", "office_did", "fax_did", "email", "mobile",
           "dialplan", "fax_dialplan", "language", "group", "department")
REQUIRED = ("name", "extension")
_TEXT_COLUMNS = ("name", "department")
_FORMULA_START = ("=", "+", "-", "@")
MAX_ROWS = 200_000


def _cell(column: str, value: object) -> str:
    text = "" if value is None else str(value)
    if column in _TEXT_COLUMNS and text.startswith((*_FORMULA_START, "'")):
        return "'" + text
    return text


def users_csv(users: Iterable[User]) -> str:
    """The CSV text of `users` (a header row, then one row per user)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for user in users:
        writer.writerow([_cell(c, getattr(user, c)) for c in COLUMNS])
    return buffer.getvalue()


def parse_users_csv(text: str, source: str = "users.csv") -> list[Incoming]:
    """The rows of a users CSV file as incoming users, each located by its line
    (`users.csv line 12`); a SettingsError lists every problem of the file's shape (header,
    cell count). The users' values are checked when they are merged (`merge_users`)."""
    if text.startswith("\ufeff"):  # a spreadsheet's byte-order mark
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[Problem] = []
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise SettingsError(f"{source} is not valid CSV",
                            [Problem(f"{source} line 1", str(exc))]) from None
    if header is None:
        raise SettingsError(f"{source} is empty: it needs a header row "
                            f"({','.join(COLUMNS)})")
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or twice:
        detail = [f"unknown column {n!r}" for n in unknown] + \
                 [f"missing column {n!r}" for n in missing] + \
                 [f"column {n!r} given twice" for n in twice]
        raise SettingsError(f"{source}: bad header row (the columns are "
                            f"{', '.join(COLUMNS)})",
                            [Problem(f"{source} line 1", d) for d in detail])
    rows: list[Incoming] = []
    line = reader.line_num + 1
    try:
        for cells in reader:
            where = f"{source} line {line}"
            line = reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue  # blank lines, as spreadsheets leave them at the end
            if len(cells) != len(names):
                problems.append(Problem(where, f"{len(cells)} cells, the header has "
                                               f"{len(names)}"))
                continue
            data: dict[str, object] = {}
            for name, value in zip(names, cells, strict=True):
                if name in _TEXT_COLUMNS and value.startswith("'"):
                    value = value[1:]
                data[name] = value if value != "" else None
            rows.append(Incoming(where, data))
            if len(rows) > MAX_ROWS:
                raise SettingsError(f"{source} has more than {MAX_ROWS} rows")
    except csv.Error as exc:
        problems.append(Problem(f"{source} line {reader.line_num}", str(exc)))
    if problems:
        raise SettingsError(f"{source} has {len(problems)} problem(s); nothing was imported",
                            problems)
    return rows
