"""Reading raw drops with DuckDB: strict formats, bounded memory, exact error locations.

:func:`load_csv` reads a raw file into a DuckDB table column for column (types from
:mod:`domains.ecommerce_ml.formats`; ``article_id`` stays a string) and adds ``_line``, the
physical line of the file on which the row starts (a quoted value may span lines, so a record's
number is not its line: the 60th record after 11 two-line ``detail_desc`` values starts on line 72).
A corrupt file raises :class:`CorruptFile` naming the file, that line and the column, before
anything is written anywhere:

- a header that is not exactly the format's columns (order and spelling);
- a value of the wrong type (DuckDB's rejects table gives line and column);
- a row with missing or extra columns, an unterminated quote;
- a file cut short (its last line has no line end).

DuckDB runs with a memory limit and a spill folder, so a day of any size streams through.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Any

from domains.ecommerce_ml.formats import FileFormat

MEMORY_LIMIT = os.environ.get("ECOMMERCE_ML_DUCKDB_MEMORY", "512MB")
THREADS = int(os.environ.get("ECOMMERCE_ML_DUCKDB_THREADS", "2"))


def fails_fast(func):
    """A :class:`CorruptFile` fails the task at once (AirflowFailException): retrying cannot fix a file."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CorruptFile as exc:
            if _in_task():
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(str(exc)) from exc
            raise

    return wrapper


def _in_task() -> bool:
    try:
        from airflow.sdk import get_current_context

        get_current_context()
        return True
    except Exception:
        return False


def fetch(con: Any, sql: str, params: Any = None) -> list[tuple]:
    """Run a query and read all of its rows (DuckDB 2 keeps a partly read result open)."""
    return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()


class CorruptFile(ValueError):
    """A raw file that does not follow its format."""

    def __init__(self, file: str, line: int, column: str, problem: str) -> None:
        self.file, self.line, self.column, self.problem = file, line, column, problem
        super().__init__(f"{file}: line {line}, column {column!r}: {problem}")


@contextmanager
def duckdb_session(threads: int = THREADS, memory_limit: str = MEMORY_LIMIT):
    """A DuckDB connection with a memory limit and its own spill folder (removed after)."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="ecommerce-ml-duckdb-") as tmp:
        con = duckdb.connect(os.path.join(tmp, "work.duckdb"))
        try:
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET threads = {int(threads)}")
            con.execute(f"SET temp_directory = '{os.path.join(tmp, 'spill')}'")
            con.execute("SET preserve_insertion_order = true")
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


def _check_header_and_end(local: str, fmt: FileFormat, display: str) -> None:
    with open(local, "rb") as f:
        first = f.readline().decode("utf-8-sig", errors="replace").rstrip("\r\n")
        got = first.split(",")
        if got != fmt.names:
            for i, name in enumerate(fmt.names):
                if i >= len(got) or got[i] != name:
                    found = got[i] if i < len(got) else "(nothing)"
                    raise CorruptFile(display, 1, name, f"bad header: expected {name!r} at position {i + 1}, "
                                      f"found {found!r}")
            raise CorruptFile(display, 1, got[len(fmt.names)], f"bad header: unexpected extra column "
                              f"{got[len(fmt.names)]!r}")
        size = os.fstat(f.fileno()).st_size
        if size == f.tell():
            return  # header only: an empty day
        f.seek(max(0, size - 1))
        if f.read(1) != b"\n":
            lines, last = _count_lines(local)
            fields = len(last.split(","))
            column = fmt.names[min(fields, len(fmt.names)) - 1]
            raise CorruptFile(display, lines, column, "file truncated: the last line has no line end")


def _count_lines(local: str) -> tuple[int, str]:
    n, last = 0, ""
    with open(local, "rb") as f:
        for line in f:
            n += 1
            last = line.decode("utf-8", errors="replace")
    return n, last


def _line_at(local: str, byte_position: int) -> int:
    """The physical line (1-based) holding byte ``byte_position`` of the file (DuckDB's rejects table gives
    a record's ``line`` as its record number + 1 and its ``line_byte_position``, which stays exact)."""
    lines, left = 1, byte_position
    with open(local, "rb") as f:
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            left -= len(chunk)
    return lines


def _has_quote(local: str) -> bool:
    """Whether the file holds a ``"`` at all (a byte search, at disk speed): without one no value is quoted,
    so none can span lines."""
    with open(local, "rb") as f:
        while chunk := f.read(1 << 22):
            if b'"' in chunk:
                return True
    return False


def _physical_lines(con: Any, table: str, fmt: FileFormat, local: str) -> None:
    """Shift ``_line`` (record number + 1) by the line ends inside the quoted values of the rows before it.

    Only quoted text values can hold a line end (any other type would have been rejected), and only a table
    that has one is rewritten: a file without multi-line values keeps ``_line`` as it was; a file without a
    quote character (the transactions) is not even scanned in DuckDB."""
    text = [c for c, t in fmt.columns if t == "VARCHAR"]
    if not text or not _has_quote(local):
        return
    ends = " + ".join(f"coalesce(length({c}) - length(replace({c}, chr(10), '')), 0)" for c in text)
    if not fetch(con, f"SELECT count(*) FROM {table} WHERE {ends} > 0")[0][0]:
        return
    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * REPLACE ((_line + coalesce(sum({ends}) OVER ("
                f"ORDER BY _line ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))::BIGINT AS _line) "
                f"FROM {table} ORDER BY _line")


def load_csv(con: Any, table: str, local: str, fmt: FileFormat, display: str, *, replace: bool = True,
             missing_ok: bool = False) -> int:
    """Read ``local`` (shown as ``display`` in errors) into DuckDB table ``table``; rows read.

    ``_line`` is the physical line a row starts on when ``replace`` (a fresh table); appended rows
    (``replace=False``) keep their record number + 1."""
    _check_header_and_end(local, fmt, display)
    verb = "CREATE OR REPLACE TABLE" if replace else "INSERT INTO"
    select = (
        "SELECT *, (row_number() OVER () + 1)::BIGINT AS _line FROM read_csv(?, header = true, columns = ?, "
        "auto_detect = false, hive_partitioning = false, delim = ',', quote = '\"', escape = '\"', store_rejects = true, "
        "rejects_table = 'ecm_rejects', rejects_scan = 'ecm_scans', timestampformat = '%Y-%m-%dT%H:%M:%S.%f%z')"
    )
    con.execute("DROP TABLE IF EXISTS ecm_rejects")
    con.execute("DROP TABLE IF EXISTS ecm_scans")
    sql = f"{verb} {table} AS {select}" if replace else f"{verb} {table} {select}"
    try:
        con.execute(sql, [local, fmt.duckdb_types()])
    except Exception as exc:  # DuckDB's own sniffing/parsing errors: name the file at least
        raise CorruptFile(display, 0, "?", f"unreadable: {exc}") from exc
    bad = fetch(con, "SELECT line, line_byte_position, column_name, error_type, error_message FROM ecm_rejects"
                     " ORDER BY line LIMIT 1")
    if bad:
        line, position, column, kind, message = bad[0]
        if column is None:
            column = "?"
        first = message.splitlines()[0] if message else kind
        line = _line_at(local, int(position)) if position is not None else int(line)
        raise CorruptFile(display, line, str(column), f"{str(kind).lower()}: {first}")
    if replace:
        _physical_lines(con, table, fmt, local)
    return fetch(con, f"SELECT count(*) FROM {table}")[0][0]
