"""bot.urls.redact: credentials in a source URL reach the server and nothing else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.errors import FetchError, ParseError
from bot.ingest.poll import poll
from bot.model import Source
from bot.store import Store
from bot.urls import redact, redact_urls_in
from tests.conftest import settings_for, sync
from tests.feed_server import FeedServer


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pa55@news.example/feed?api_key=abc&token=def&q=csam",
            "https://***@news.example/feed?api_key=***&token=***&q=csam",
        ),
        ("https://TOKEN123@news.example/rss", "https://***@news.example/rss"),
        (
            "https://s3.example/f.xml?X-Amz-Credential=AK&X-Amz-Signature=5f&X-Amz-Expires=60",
            "https://s3.example/f.xml?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        ("https://news.example/rss?apiKey=1&client_secret=2&sessionid=3", None),
        (
            "https://news.example/rss?author=jane&q=deep+fake&page=2",
            "https://news.example/rss?author=jane&q=deep+fake&page=2",
        ),
        (
            "https://news.example/cb#access_token=xyz&state=1",
            "https://news.example/cb#access_token=***&state=1",
        ),
        ("http://user:pw@[::1/feed?token=t", "http://***@[::1/feed?token=***"),  # urlsplit refuses it
        (
            "https://news.google.com/rss/search?q=csam&hl=en-US",
            "https://news.google.com/rss/search?q=csam&hl=en-US",
        ),
    ],
)
def test_redact(url: str, shown: str | None) -> None:
    redacted = redact(url)
    if shown is not None:
        assert redacted == shown
    for secret in ("pa55", "abc", "def", "TOKEN123", "AK", "5f", "xyz", "pw"):
        assert f"={secret}" not in redacted and f"{secret}@" not in redacted and f":{secret}" not in redacted
    assert redact(redacted) == redacted  # redacting twice changes nothing


def test_feed_errors_never_carry_credentials() -> None:
    url = "https://user:pa55@news.example/feed?token=t0k"
    error = FetchError(
        url, "HTTP error: 404, message='Not Found', url='https://user:pa55@news.example/feed?token=t0k'"
    )
    assert "pa55" not in str(error) and "t0k" not in str(error) and "pa55" not in error.reason
    assert error.url == url  # what is fetched is still the real URL
    assert "pa55" not in str(ParseError(url, "not a feed"))
    assert redact_urls_in("no url here") == "no url here"


def test_a_failing_source_with_credentials_is_logged_without_them(
    tmp_path: Path, feeds: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The server answers a page, not a feed: the "source failed" line names the source's URL.
    good = feeds.serve("/page", "<html><body>not a feed</body></html>", headers={"Content-Type": "text/html"})
    url = good.replace("http://", "http://reader:s3cret-pw@") + "?api_key=K3Y-VALUE&token=T0KEN"
    feeds.routes["/page?api_key=K3Y-VALUE&token=T0KEN"] = feeds.routes["/page"]
    settings = settings_for(tmp_path, Source("private", url))
    with caplog.at_level(logging.DEBUG), Store.open(settings.db_path) as store:
        sync(store, settings)
        assert poll(settings, store).failed == 1
        (row,) = store.db["sources"].rows_where("name = ?", ["private"])
        stored = row["last_error"]
    failed = [r.getMessage() for r in caplog.records if "source failed" in r.getMessage()]
    assert failed and "url=http://***@127.0.0.1" in failed[0] and "api_key=***" in failed[0]
    everything = "\n".join(r.getMessage() for r in caplog.records) + f"\n{stored}"
    for secret in ("s3cret-pw", "K3Y-VALUE", "T0KEN"):
        assert secret not in everything
    assert feeds.hits("/page?api_key=K3Y-VALUE&token=T0KEN") == 1  # the server got the real URL
