"""The whole exception hierarchy of newsalert, shaped around the resource that failed.

Every error names *where* the problem is (a config file and line, a feed URL, a
watchlist and column) so the message can be shown to a user as-is.
"""

from __future__ import annotations


class NewsalertError(Exception):
    """Base class for every error newsalert raises on purpose."""


class ConfigError(NewsalertError):
    """The configuration file is unusable. ``str()`` is one line for the user."""

    def __init__(self, path: str, problem: str, *, key: str | None = None, line: int | None = None):
        self.path = path
        self.problem = problem
        self.key = key
        self.line = line
        where = path if line is None else f"{path}:{line}"
        what = f"{key}: {problem}" if key else problem
        super().__init__(f"{where}: {what}")


class QueryError(NewsalertError):
    """A watchlist query does not parse or exceeds a limit (bot/match/limits.py).

    ``position`` is 0-based; the message says the column (1-based), and the line too when the query
    has several lines (a TOML multi-line string).
    """

    def __init__(self, problem: str, position: int, *, query: str = "", watchlist: str | None = None):
        self.problem = problem
        self.position = position
        self.query = query
        self.watchlist = watchlist
        prefix = f'watchlist "{watchlist}": ' if watchlist else ""
        super().__init__(f"{prefix}{problem} at {self.where}")

    @property
    def where(self) -> str:
        """ "column 12", or "line 3, column 12" in a query of several lines."""
        return f"line {self.line}, column {self.column}" if "\n" in self.query else f"column {self.column}"

    @property
    def line(self) -> int:
        """1-based line of the query that holds the error."""
        return self.query.count("\n", 0, self.position) + 1

    @property
    def column(self) -> int:
        """1-based column of the error within its line."""
        return self.position - (self.query.rfind("\n", 0, self.position) + 1) + 1

    def __reduce__(self) -> tuple:
        # Raised in a parse worker (bot/ingest/prepare.py) when it compiles the watchlists: rebuilt from
        # the constructor's arguments, as Exception's default would pass the message as the only one.
        return (_query_error, (self.problem, self.position, self.query, self.watchlist))

    def for_watchlist(self, watchlist: str) -> QueryError:
        """The same error, re-labelled with the watchlist it came from."""
        return QueryError(self.problem, self.position, query=self.query, watchlist=watchlist)

    def pointer(self, width: int = 120) -> tuple[str, str] | None:
        """(the query line holding the error, a caret under the error) to show below the message;
        None when that line is too long to show usefully."""
        text = self.query.split("\n")[self.line - 1] if self.query else ""
        if not text.strip() or len(text) > width:
            return None
        return text, " " * (self.column - 1) + "^"


def _query_error(problem: str, position: int, query: str, watchlist: str | None) -> QueryError:
    return QueryError(problem, position, query=query, watchlist=watchlist)


class SearchTimeout(NewsalertError):
    """A history search ran past its time budget; the user is asked to narrow it.

    ``checked`` of ``candidates`` items had been confirmed by the matcher when time ran out.
    """

    def __init__(self, budget: float, checked: int, candidates: int):
        self.budget = budget
        self.checked = checked
        self.candidates = candidates
        super().__init__(
            f"search took too long (over {budget:g} s; {checked:,} of {candidates:,} candidate items checked)"
        )


class FeedError(NewsalertError):
    """Something went wrong with one source; the others carry on.

    ``url`` is the source's URL as configured; ``reason`` and ``str()`` are what gets logged,
    stored and shown, so any URL in them is redacted (bot.urls.redact): no credentials.
    """

    def __init__(self, url: str, reason: str):
        from bot.urls import redact, redact_urls_in  # here: bot.urls imports the fetcher, which imports us

        self.url = url
        self.reason = redact_urls_in(reason)
        super().__init__(f"{redact(url)}: {self.reason}")

    def __reduce__(self) -> tuple:
        # Pickled by the parse workers (bot/ingest/prepare.py): rebuilt from the constructor's arguments
        # (Exception's default would pass the formatted message as the only one), then its state.
        return (type(self), (self.url, self.reason), self.__dict__)


class FetchError(FeedError):
    """The source could not be fetched (network, HTTP status, size or time limit).

    The attributes tell the scheduler what to do next: ``gone`` (HTTP 410) means disable the
    source and report it; ``retry_after`` (seconds, from a 429/503) is how long the server asked
    us to stay away; ``blocked`` means the address policy refused the URL (a retry
    only helps if the source's DNS changes).
    """

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        gone: bool = False,
        blocked: bool = False,
    ):
        super().__init__(url, reason)
        self.status = status
        self.retry_after = retry_after
        self.gone = gone
        self.blocked = blocked


class ParseError(FeedError):
    """The source was fetched but its body is not a feed we can read."""


class ParseAborted(ParseError):
    """Reading the body was stopped before it finished: it ran past the parse budget
    (``timed_out``), or the process reading it died. The worker process is replaced and this
    source alone fails; the rest of the poll carries on."""

    def __init__(self, url: str, reason: str, *, timed_out: bool = True):
        super().__init__(url, reason)
        self.timed_out = timed_out


class StoryModelError(NewsalertError):
    """The story decision's model files (embeddings, fitted weights) are missing or not the pinned ones."""


class StoreError(NewsalertError):
    """The database cannot be opened or migrated."""


class DeliveryError(NewsalertError):
    """Posting to Slack failed."""


class SlackAuthError(DeliveryError):
    """The Slack token is invalid or revoked: nothing can be delivered until a human fixes it."""


class RetryLater(DeliveryError):
    """Slack did not take the message this time; the alert stays queued.

    ``maybe_posted``: no answer came back (timeout, reset), so the post may have happened.
    ``retry_after``: Slack said when to come back (HTTP 429).
    """

    def __init__(self, message: str, *, maybe_posted: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.maybe_posted = maybe_posted
        self.retry_after = retry_after


class Rejected(DeliveryError):
    """Slack refused this message with an error code."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


class ScheduleError(NewsalertError, ValueError):
    """A digest schedule or timezone that cannot be used; the message says why."""


class OpmlError(NewsalertError, ValueError):
    """The file is not OPML we can read; the message says why."""
