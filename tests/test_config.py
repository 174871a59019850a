"""Loading newsalert.toml: defaults, the environment, and errors that name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings, parse_duration
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[defaults]
interval = "15m"

[[sources]]
name = "UN News"
url = "https://news.un.org/feed/subscribe/en/news/all/rss.xml"

[[sources]]
name = "APP"
url = "https://www.app.com.pk/wp-json/wp/v2/posts"
type = "wordpress"
interval = "5m"

[watchlists.csam]
query = 'CSAM OR "child sexual abuse material"'

[watchlists.deepfakes]
query = 'deep-fake* OR nudif*'

[[subscriptions]]
channel = "C0123456789"
watchlists = ["csam", "deepfakes"]
"""


def load(tmp_path: Path, text: str, **kwargs):
    path = tmp_path / "newsalert.toml"
    path.write_text(text)
    return load_settings(path, environ=kwargs.pop("environ", {}), **kwargs)


def error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


def test_good_config_resolves(tmp_path: Path) -> None:
    settings = load(tmp_path, GOOD)
    assert [s.name for s in settings.sources] == ["UN News", "APP"]
    assert settings.sources[0].interval == 900
    assert settings.sources[1].interval == 300
    assert settings.sources[1].type == "wordpress"
    assert [w.name for w in settings.watchlists] == ["csam", "deepfakes"]
    assert settings.subscriptions[0].watchlists == ("csam", "deepfakes")
    assert settings.first_poll_window == 86400
    assert settings.slack_token is None
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.db_path == "newsalert.db"


def test_environment_supplies_slack_and_database(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        GOOD,
        environ={
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_API_URL": "http://127.0.0.1:9/api",
            "NEWSALERT_DB": "x.db",
        },
    )
    assert settings.slack_token == "xoxb-1"
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.db_path == "x.db"
    assert load(tmp_path, GOOD, db_path="cli.db", environ={"NEWSALERT_DB": "x.db"}).db_path == "cli.db"


def test_the_shipped_default_config_is_valid() -> None:
    settings = load_settings(ROOT / "config" / "newsalert.toml", environ={})
    assert {"csam", "deepfakes", "unicef", "sextortion"} <= {w.name for w in settings.watchlists}
    assert settings.sources and settings.subscriptions


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD.replace('interval = "5m"', 'interval = "5m'))
    assert str(e).startswith(f"{tmp_path / 'newsalert.toml'}:13: invalid TOML")
    assert e.line == 13


@pytest.mark.parametrize(
    ("change", "line", "key", "problem"),
    [
        (('interval = "15m"', 'intervall = "15m"'), 3, "defaults.intervall", "unknown key"),
        (
            ('type = "wordpress"', 'type = "wordpress"\ncolour = "red"'),
            13,
            'sources[1] "APP".colour',
            "unknown key",
        ),
        (
            ('watchlists = ["csam", "deepfakes"]', 'watchlists = ["csam", "deepfake"]'),
            23,
            "subscriptions[0].watchlists",
            "unknown watchlist 'deepfake'",
        ),
        (
            ('url = "https://news.un.org', 'url = "ftp://news.un.org'),
            7,
            'sources[0] "UN News".url',
            "must be an http:// or https:// URL",
        ),
        (
            ('url = "https://news.un.org/feed/subscribe/en/news/all/rss.xml"', 'url = "http://127.0.0.1/x"'),
            7,
            'sources[0] "UN News".url',
            "private or loopback",
        ),
        (('interval = "5m"', 'interval = "soon"'), 13, 'sources[1] "APP".interval', "expected a duration"),
        (('type = "wordpress"', 'type = "atom"'), 12, 'sources[1] "APP".type', "must be one of"),
        (
            ("query = 'deep-fake* OR nudif*'", "query = 'deep-fake* OR (nudif*'"),
            19,
            "watchlists.deepfakes.query",
            'watchlist "deepfakes"',
        ),
        (
            ("[watchlists.deepfakes]", '[watchlists."<!here>"]'),
            18,
            "watchlists.<!here>",
            "'<!here>' cannot be a watchlist name: letters, digits, - and _",
        ),
        (('name = "APP"', 'name = "UN News"'), 10, 'sources[1] "UN News".name', "duplicate source name"),
        (
            ('channel = "C0123456789"', 'channel = "not a channel!"'),
            22,
            "subscriptions[0].channel",
            "must be a Slack channel ID",
        ),
    ],
)
def test_semantic_errors_name_line_key_and_problem(tmp_path, change, line, key, problem) -> None:
    old, new = change
    assert old in GOOD
    e = error(tmp_path, GOOD.replace(old, new))
    assert e.line == line, str(e)
    assert e.key == key
    assert problem in str(e)
    assert "\n" not in str(e)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_private_sources_allowed_when_asked(tmp_path: Path) -> None:
    text = GOOD.replace('interval = "15m"', 'interval = "15m"\nallow_private_sources = true')
    text = text.replace("https://news.un.org/feed/subscribe/en/news/all/rss.xml", "http://127.0.0.1:8080/f")
    assert load(tmp_path, text).sources[0].url == "http://127.0.0.1:8080/f"


def test_first_poll_window_can_be_turned_off(tmp_path: Path) -> None:
    text = GOOD.replace('interval = "15m"', 'interval = "15m"\nfirst_poll_window = "0"')
    assert load(tmp_path, text).first_poll_window is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("2h", 7200), ("1d", 86400), ("30s", 30), (60, 60)]
)
def test_parse_duration(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "15 minutes", "-5m", 0, True, "1.5h"])
def test_parse_duration_rejects(bad) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_adaptive_polling_bounds_in_defaults_and_per_source(tmp_path: Path) -> None:
    text = GOOD.replace('interval = "15m"', 'interval = "15m"\nmin_interval = "2m"\nmax_interval = "2h"')
    text = text.replace('interval = "5m"', 'interval = "5m"\nmax_interval = "30m"')
    settings = load(tmp_path, text)
    assert (settings.min_interval, settings.max_interval) == (120, 7200)
    un, app = settings.sources
    assert (un.min_interval, un.max_interval) == (None, None)  # [defaults]' at poll time
    assert (app.interval, app.min_interval, app.max_interval) == (300, None, 1800)
    plain = load(tmp_path, GOOD)
    assert (plain.min_interval, plain.max_interval) == (None, None)  # interval / 3 and x 4


@pytest.mark.parametrize(
    ("change", "line", "key", "problem"),
    [
        (
            ('interval = "15m"', 'interval = "15m"\nmin_interval = "20m"'),
            4,
            "defaults.min_interval",
            "min_interval 20m is longer than interval 15m",
        ),
        (
            ('interval = "15m"', 'interval = "15m"\nmax_interval = "10m"'),
            4,
            "defaults.max_interval",
            "max_interval 10m is shorter than interval 15m",
        ),
        (
            ('interval = "5m"', 'interval = "5m"\nmin_interval = "10m"'),
            14,
            'sources[1] "APP".min_interval',
            "min_interval 10m is longer than interval 5m",
        ),
        (  # [defaults]' floor does not fit a source's own interval: said at that interval
            ('interval = "15m"', 'interval = "15m"\nmin_interval = "10m"'),
            14,
            'sources[1] "APP".interval',
            "min_interval 10m is longer than interval 5m",
        ),
        (
            ('interval = "5m"', 'interval = "5m"\nmax_interval = "soon"'),
            14,
            'sources[1] "APP".max_interval',
            "expected a duration",
        ),
        (
            ("[watchlists.csam]", '[websub]\nbase_url = "bot.example.org"\n\n[watchlists.csam]'),
            16,
            "websub.base_url",
            "must be an http:// or https:// URL",
        ),
        (
            ("[watchlists.csam]", '[websub]\nbase = "https://bot.example.org"\n\n[watchlists.csam]'),
            16,
            "websub.base",
            "unknown key",
        ),
    ],
)
def test_adaptive_polling_and_websub_errors(tmp_path, change, line, key, problem) -> None:
    old, new = change
    assert old in GOOD
    e = error(tmp_path, GOOD.replace(old, new, 1))
    assert (e.line, e.key) == (line, key), str(e)
    assert problem in str(e)


def test_websub_base_url_from_the_file_or_the_environment(tmp_path: Path) -> None:
    text = GOOD + '\n[websub]\nbase_url = "https://bot.example.org/"\nlease = "2d"\n'
    settings = load(tmp_path, text)
    assert (settings.websub_base_url, settings.websub_lease) == ("https://bot.example.org", 172800)
    settings = load(tmp_path, text, environ={"NEWSALERT_PUBLIC_URL": "https://public.example.org/bot"})
    assert settings.websub_base_url == "https://public.example.org/bot"
    assert load(tmp_path, GOOD).websub_base_url is None  # WebSub off
    with pytest.raises(ConfigError, match="NEWSALERT_PUBLIC_URL: must be a base URL without"):
        load(tmp_path, GOOD, environ={"NEWSALERT_PUBLIC_URL": "https://bot.example.org/?x=1"})
