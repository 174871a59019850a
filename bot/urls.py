"""The rules for source URLs: which addresses a source may have, whoever adds it (config, OPML,
Slack), and how a source URL is written wherever it is logged or shown (``redact``).

The fetcher applies the same address rule again on every connection (bot.ingest.fetch), so a
name that resolves to a private address is refused there; this module catches what can be seen
in the URL itself, early, with a message that names the problem. A source URL may carry
credentials (``https://user:pass@host/…``, ``?api_key=…&token=…``) that must reach the server
and nothing else: not the logs, not ``status``, not Slack.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

from bot.ingest.fetch import address_problem


def is_private_host(host: str) -> bool:
    """localhost, or an IP literal the fetcher would refuse (loopback, private, link-local …),
    including the short and numeric IPv4 forms resolvers accept ("127.1", "2130706433", "0x7f.1")."""
    host = host.lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _legacy_literal_problem(host) is not None
    return address_problem(host) is not None


def _legacy_literal_problem(host: str) -> str | None:
    if not re.fullmatch(r"[0-9a-fA-FxX.]+", host) or not any(c.isdigit() for c in host):
        return None
    try:
        address = socket.inet_aton(host)
    except OSError:
        return None
    return address_problem(str(ipaddress.IPv4Address(address)))


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host (the first test of every URL the bot is given)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as e:
        return f"not a valid URL ({e})"
    if parts.scheme not in ("http", "https") or not host:
        return f"must be an http:// or https:// URL, got {url!r}"
    return None


def source_url_problem(url: str, *, allow_private: bool, allow_credentials: bool = False) -> str | None:
    """Why ``url`` cannot be a source, or None.

    ``allow_credentials``: a user name or password in the URL. The operator's config file may
    carry them (a feed behind basic auth); a URL typed in a Slack channel may not, since everyone
    in the channel would read them.
    """
    if problem := http_url_problem(url):
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not allow_credentials and (parts.username or parts.password):
        return "must not carry a user name or password"
    if not allow_private and is_private_host(host):
        return (
            f"{host} is a private or loopback address; sources must be on the public internet "
            "(set [defaults] allow_private_sources = true for local sources)"
        )
    return None


# --- how a source URL is shown -------------------------------------------------------------

REDACTED = "***"

# Query (or fragment) parameter names whose values are secrets. Matched on the name lower-cased
# with "-" and "_" removed, so api_key, api-key, apiKey and APIKEY are one name.
_SECRET_NAMES = frozenset(
    {"key", "apikey", "accesskey", "secretkey", "privatekey", "sig", "code", "pass", "pw", "pwd"}
)
_SECRET_PARTS = ("token", "secret", "password", "passwd", "credential", "signature", "session", "auth")
_NOT_SECRET = frozenset({"author", "authors", "authorid", "authorname"})
# A URL inside free text (an error message): up to the first space, quote or bracket.
_URL_IN_TEXT = re.compile(r"""https?://[^\s"'<>()\[\]{}]+""", re.IGNORECASE)
# For text urlsplit refuses (an unbalanced "[" in the host): user info between "//" and "@".
_USERINFO = re.compile(r"(?<=//)[^/?#@]*@")


def redact(url: str) -> str:
    """``url`` with its user info and the values of secret-looking parameters replaced by ``***``.

    Everything else is kept byte for byte (nothing is re-encoded), so the redacted URL still
    says which feed it is: ``https://***@news.example/feed?q=csam&api_key=***``.
    """
    if "@" not in url and "=" not in url:
        return url  # nearly every URL: nothing that could be a secret
    try:
        parts = urlsplit(url)
    except ValueError:
        head, question, query = _USERINFO.sub(REDACTED + "@", url, count=1).partition("?")
        return head + question + _redact_params(query)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rpartition("@")[2]
    return urlunsplit(
        (parts.scheme, netloc, parts.path, _redact_params(parts.query), _redact_params(parts.fragment))
    )


def redact_urls_in(text: str) -> str:
    """``text`` (an error message, say) with every http(s) URL in it redacted."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda found: redact(found.group()), text)


def _redact_params(query: str) -> str:
    if "=" not in query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value and _is_secret(name):
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return "&".join(pairs)


def _is_secret(name: str) -> bool:
    folded = name.lower().replace("-", "").replace("_", "")
    if folded in _SECRET_NAMES:
        return True
    if folded in _NOT_SECRET:
        return False
    return folded.endswith("key") or any(part in folded for part in _SECRET_PARTS)
