"""SQLite and PostgreSQL: every difference between the two dialects, in one place.

Repositories write one SQL text for both. It is SQLite's, with ``?`` or ``:name`` parameters,
and what is spelled differently (scalar min/max, case-blind comparison, JSON arrays, a text's
integer, IS NOT between nullable values, the catalog) comes from the Store's ``dialect``.
PostgresDialect.translate turns the parameters into psycopg's.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def sqlite_path(target: str) -> str:
    """The file of ``sqlite:///path`` (or a plain path, as it is)."""
    return target.removeprefix("sqlite://") if target.startswith("sqlite:///") else target


def redacted(target: str) -> str:
    """A database URL fit for logs and error messages: its password replaced by ***."""
    if not is_postgres_url(target):
        return target
    parts = urlsplit(target)
    if parts.password is None:
        return target
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class SQLiteDialect:
    name = "sqlite"

    def translate(self, sql: str) -> str:
        return sql

    def greatest(self, a: str, b: str) -> str:
        return f"max({a}, {b})"

    def least(self, a: str, b: str) -> str:
        return f"min({a}, {b})"

    def nocase(self, expr: str) -> str:
        """``expr`` for a case-blind comparison or ORDER BY (ASCII letters, as SQLite's NOCASE)."""
        return f"{expr} COLLATE NOCASE"

    def distinct(self, a: str, b: str) -> str:
        """True when ``a`` and ``b`` differ, NULL counting as a value."""
        return f"{a} IS NOT {b}"

    def json_texts(self, column: str, alias: str) -> str:
        """A FROM item: one row per element of the JSON text array ``column``, as ``alias``.value."""
        return f"json_each({column}) {alias}"

    def integer_of(self, expr: str) -> str:
        """The integer a text spells, NULL (SQLite: 0) when it spells none; never an error."""
        return f"CAST({expr} AS INTEGER)"

    def nul_free(self, text: str) -> str:
        """``text`` as stored: PostgreSQL's text cannot hold NUL, so token_df's counter rows
        (schema.TOTAL, PRUNED) begin with a space there instead, which no token holds."""
        return text

    def skip_locked(self, table: str) -> str:
        """The end of a SELECT that locks the rows of ``table`` it returns, passing over rows another
        transaction has locked (SQLite: nothing; its one writer at a time already excludes others)."""
        return ""

    def tables_sql(self) -> str:
        """SELECT name: the ordinary tables (no virtual FTS5 tables)."""
        return "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"


class PostgresDialect(SQLiteDialect):
    name = "postgresql"

    def translate(self, sql: str) -> str:
        return _pg_params(sql)

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"

    def least(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})"

    def nocase(self, expr: str) -> str:
        return f"lower({expr})"

    def distinct(self, a: str, b: str) -> str:
        return f"{a} IS DISTINCT FROM {b}"

    def json_texts(self, column: str, alias: str) -> str:
        return f"jsonb_array_elements_text({column}::jsonb) {alias}(value)"

    def integer_of(self, expr: str) -> str:
        return f"(CASE WHEN {expr} ~ '^-?[0-9]{{1,18}}$' THEN CAST({expr} AS BIGINT) END)"

    def nul_free(self, text: str) -> str:
        return text.replace("\x00", " ")

    def skip_locked(self, table: str) -> str:
        return f"FOR UPDATE OF {table} SKIP LOCKED"

    def tables_sql(self) -> str:
        return "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()"


# One token at a time: a quoted string or identifier (its % doubled, nothing else), a ? or :name
# parameter, a % (doubled: psycopg reads a lone % as the start of a placeholder), or other text.
_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|::|\?|:[A-Za-z_]\w*|%|[^'"?:%]+|.""", re.S)


def _pg_params(sql: str) -> str:
    out = []
    for token in _TOKEN.findall(sql):
        if token == "?":
            out.append("%s")
        elif token == "%":
            out.append("%%")
        elif token.startswith(":") and token != "::":
            out.append(f"%({token[1:]})s")
        elif token[0] in "'\"":
            out.append(token.replace("%", "%%"))  # psycopg reads % even inside quoted text
        else:
            out.append(token)
    return "".join(out)
