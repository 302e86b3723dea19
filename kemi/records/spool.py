"""The spool: records acc wrote while the database was down, and how they reach the table again.

acc writes through db_cluster (settings.py): the MySQL servers first, and when none takes the
insert, db_flatstore, which appends the row to a file of the spool folder, one per Kamailio
process: `kemi_acc_<process>.log`, one line per row, the values in acc's insert order
(schema.COLUMNS) separated by "|" ("|" inside a value is written %7C), the DATETIME as Unix
seconds. (No value is NULL: acc writes what the routing did not set as '', schema.py.)

The replay (Kamailio's timer process, Records.replay) takes a writer's file by renaming it
(`kemi_acc_<process>.<stamp>.replay`) and telling db_flatstore to reopen its files
(flatstore.k_rotate), so the next record goes into a new file. A taken file is inserted on a
later tick (the writer may still finish a line it had begun), all its rows in one INSERT
IGNORE (the table's transaction key drops a row that is already there), and deleted when the
database took it. A line that does not parse is kept in a `.bad` file and logged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kemi.records.schema import ACC_COLUMNS, COLUMNS, TABLE, TIME_ATTR

FLATSTORE_DELIMITER = "|"
FLATSTORE_ESCAPED_DELIMITER = "%7C"
WRITER_FILE = re.compile(rf"^{TABLE}_(\d+)\.log$")
TAKEN_SUFFIX = ".replay"
BAD_SUFFIX = ".bad"
TIME_COLUMN = ACC_COLUMNS.index("time")
TIME_ATTR_COLUMN = COLUMNS.index(TIME_ATTR)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class BadLine(ValueError):
    pass


def insert_sql() -> str:
    """The replay's statement: one row per spooled line, duplicates dropped."""
    columns = ", ".join(f"`{c}`" for c in COLUMNS)
    return f"INSERT IGNORE INTO `{TABLE}` ({columns}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


def parse_line(line: str) -> tuple:
    """One flatstore line -> the row's values in COLUMNS order."""
    fields = line.rstrip("\n").split(FLATSTORE_DELIMITER)
    if len(fields) != len(COLUMNS):
        raise BadLine(f"{len(fields)} fields, expected {len(COLUMNS)}")
    row = [text.replace(FLATSTORE_ESCAPED_DELIMITER, FLATSTORE_DELIMITER) for text in fields]
    if not row[TIME_COLUMN].isdigit():
        raise BadLine(f"time {row[TIME_COLUMN]!r} is not Unix seconds")
    row[TIME_COLUMN] = datetime.fromtimestamp(int(row[TIME_COLUMN])).strftime(TIME_FORMAT)
    try:
        float(row[TIME_ATTR_COLUMN])
    except ValueError:
        raise BadLine(f"{TIME_ATTR} {row[TIME_ATTR_COLUMN]!r} is not a number") from None
    return tuple(row)


@dataclass
class SpoolFile:
    rows: list[tuple] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)    # (line number, line, why)


def read_file(text: str) -> SpoolFile:
    out = SpoolFile()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.rows.append(parse_line(line))
        except BadLine as exc:
            out.bad.append((number, line, str(exc)))
    return out


def writer_files(folder: Path) -> list[Path]:
    """The files db_flatstore writes into now (one per process), those with something in them."""
    found = []
    for path in sorted(folder.glob(f"{TABLE}_*.log")):
        try:
            if WRITER_FILE.match(path.name) and path.stat().st_size > 0:
                found.append(path)
        except FileNotFoundError:
            pass
    return found


def taken_name(path: Path, stamp: str) -> Path:
    """kemi_acc_129.log -> kemi_acc_129.<stamp>.replay"""
    return path.with_name(f"{path.stem}.{stamp}{TAKEN_SUFFIX}")


def taken_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{TABLE}_*{TAKEN_SUFFIX}"))
