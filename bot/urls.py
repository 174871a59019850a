"""The one rule for source URLs: which addresses a source may have, whoever adds it (config, OPML, Slack).

The fetcher applies the same address rule again on every connection (bot.ingest.fetch), so a
name that resolves to a private address is refused there; this module catches what can be seen
in the URL itself, early, with a message that names the problem.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

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


def source_url_problem(url: str, *, allow_private: bool, allow_credentials: bool = False) -> str | None:
    """Why ``url`` cannot be a source, or None.

    ``allow_credentials``: a user name or password in the URL. The operator's config file may
    carry them (a feed behind basic auth); a URL typed in a Slack channel may not, since everyone
    in the channel would read them.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as e:
        return f"not a valid URL ({e})"
    if parts.scheme not in ("http", "https") or not host:
        return f"must be an http:// or https:// URL, got {url!r}"
    if not allow_credentials and (parts.username or parts.password):
        return "must not carry a user name or password"
    if not allow_private and is_private_host(host):
        return (
            f"{host} is a private or loopback address; sources must be on the public internet "
            "(set [defaults] allow_private_sources = true for local sources)"
        )
    return None
