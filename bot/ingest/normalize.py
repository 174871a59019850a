"""Normalize stage: ``Entry`` (as the feed gave it) -> ``Item`` (plain text, canonical URL, UTC).

Everything here is a pure function of its arguments, so it can be re-run over stored entries.
URLs inside the text are left alone on purpose: the matcher masks them itself.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime
from urllib.parse import SplitResult, parse_qsl, unquote_plus, urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser

from bot.model import Entry, Item, Source

log = logging.getLogger("newsalert.normalize")

# Removed together with everything inside them: none of it is prose, and alt texts and
# captions ("Photo: Getty Images") would otherwise produce false matches.
_DROPPED_TAGS = [
    "img",
    "picture",
    "source",
    "video",
    "audio",
    "track",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "canvas",
    "figure",
    "figcaption",
    "script",
    "style",
    "noscript",
    "template",
    "head",
    "title",
    "meta",
    "link",
    "base",
]

# Elements that end a line when rendered: without a space at their edges,
# "<p>end.</p><p>Start</p>" would read "end.Start" and whole words would glue together.
_BLOCK_TAGS = [
    "p",
    "div",
    "br",
    "hr",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "caption",
    "tr",
    "td",
    "th",
    "section",
    "article",
    "aside",
    "header",
    "footer",
    "nav",
    "main",
    "address",
    "details",
    "summary",
]

# Feed fields may hold plain text or HTML and nothing says which. A real tag name is required
# before the text goes through the HTML parser, because the parser would take "x<y and z>1"
# for an element and drop it. Plain "a < b" is safe either way.
_INLINE_TAGS = [
    "a",
    "abbr",
    "b",
    "bdi",
    "bdo",
    "big",
    "body",
    "center",
    "cite",
    "code",
    "del",
    "dfn",
    "em",
    "font",
    "html",
    "i",
    "ins",
    "kbd",
    "label",
    "mark",
    "q",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "tbody",
    "tfoot",
    "thead",
    "time",
    "tt",
    "u",
    "var",
    "wbr",
]
_KNOWN_TAGS = {*_DROPPED_TAGS, *_BLOCK_TAGS, *_INLINE_TAGS}
# A tag name as the HTML tokenizer reads it: an ASCII letter after "<" or "</", up to whitespace, "/"
# or ">". An element in the parsed tree has its name here, except two the parser creates itself:
# an "img" from "<image>" and a "tr" around a cell in a "<table>" ("</p>" and "</br>" create a "p"
# and a "br", and are caught by the "</").
_TAG_NAME = re.compile(r"</?([A-Za-z][^\s/>]*)")
_TAG_NAMES = "|".join(sorted(_KNOWN_TAGS))
_LOOKS_LIKE_HTML = re.compile(rf"<(?:!--|/?(?:{_TAG_NAMES})\b)", re.IGNORECASE)

# Invisible characters that sit inside words; removing them lets "deep\u200bfake" match "deepfake".
# Control characters go too (whitespace ones are folded below): an ESC from a feed would
# otherwise reach the console as a terminal escape sequence, and NUL has no business in Slack.
_INVISIBLE = re.compile("[\u00ad\u200b\u2060\ufeff\x00-\x08\x0e-\x1f\x7f-\x9f]")

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Plus every utm_* parameter.
_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "_ga",
        "_gl",
        "ref_src",
        "cmpid",
    }
)

_OUTLET_SEPARATORS = (" - ", " – ", " — ", " | ")


def html_to_text(html_or_text: str) -> str:
    """Readable plain text: no markup, no media, entities decoded, whitespace folded to single spaces."""
    if _LOOKS_LIKE_HTML.search(html_or_text):
        tree = LexborHTMLParser(html_or_text, is_fragment=True)
        # Every name given to strip_tags is a walk over the tree, and a selector of all the block
        # tags is slow to parse: ask only for the tags the markup can contain.
        names = {name.lower() for name in _TAG_NAME.findall(html_or_text)}
        if "image" in names:
            names.add("img")
        if "table" in names:
            names.add("tr")
        dropped = [tag for tag in _DROPPED_TAGS if tag in names]
        if dropped:
            tree.strip_tags(dropped, recursive=True)
        blocks = [tag for tag in _BLOCK_TAGS if tag in names]
        for node in tree.css(",".join(blocks)) if blocks else ():
            node.insert_before(" ")
            node.insert_after(" ")
        text = tree.text()
    else:
        text = html.unescape(html_or_text)
    text = _INVISIBLE.sub("", text)
    # str.split() with no argument splits on every Unicode space (NBSP, thin space, ideographic
    # space, line separators...), so this both maps them to " " and folds the runs.
    return " ".join(text.split())


def canonical_url(url: str, base: str = "") -> str:
    """The URL to link to: absolute http(s), no fragment, no tracking parameters, no redirector
    wrapped around it; "" when not a usable http(s) URL. (url_key() goes further, for dedup.)"""
    url = url.strip()
    if not url:
        return ""
    try:
        # urljoin and urlsplit refuse some malformed links ("https://[::1/x")
        parts = urlsplit(urljoin(base, url) if base else url)
        target = _redirect_target(parts)
        if target:
            parts = urlsplit(target)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased, without user info and port
    if scheme not in _DEFAULT_PORTS or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal: hostname drops the brackets
    # User info is dropped: it never identifies an article and must not end up posted to Slack.
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", _without_tracking(parts.query), ""))


# Redirectors that carry the real article URL in a query parameter (feed proxies, search and
# social click-trackers). Opaque ones (news.google.com/rss/articles/…, t.co) cannot be undone
# without fetching them, and are left alone.
_REDIRECTORS = {
    "www.google.com": ("/url", ("url", "q")),
    "google.com": ("/url", ("url", "q")),
    "www.bing.com": ("/news/apiclick.aspx", ("url",)),
    "bing.com": ("/news/apiclick.aspx", ("url",)),
    "l.facebook.com": ("/l.php", ("u",)),
    "lm.facebook.com": ("/l.php", ("u",)),
    "out.reddit.com": ("", ("url",)),
    "www.linkedin.com": ("/redir/redirect", ("url",)),
    "feedproxy.google.com": ("", ("url",)),
    "news.yahoo.com": ("/redirect", ("url",)),
}
_AMP_CACHE = re.compile(r"^[a-z0-9-]+\.cdn\.ampproject\.org$")


def _redirect_target(parts: SplitResult) -> str | None:
    """The article URL inside a known redirector's link, or None."""
    host = (parts.hostname or "").lower()
    if _AMP_CACHE.match(host):
        # https://www-example-com.cdn.ampproject.org/c/s/www.example.com/path -> the publisher's page
        match = re.match(r"^/[a-z]/(s/)?(.+)$", parts.path)
        if match:
            return ("https://" if match.group(1) else "http://") + match.group(2)
        return None
    rule = _REDIRECTORS.get(host)
    if rule is None or not parts.path.startswith(rule[0]):
        return None
    params = dict(parse_qsl(parts.query))
    for name in rule[1]:
        target = params.get(name, "")
        if target.lower().startswith(("http://", "https://")):
            return target
    return None


_MOBILE_HOST = re.compile(r"^(?:www|m|mobile|amp|www\d?)\.")
_AMP_PATH = re.compile(r"(?:/amp/?$|\.amp(?=$|\.html?$)|^/amp(?=/))", re.IGNORECASE)
_AMP_PARAMS = {"amp", "outputtype", "amp_js_v", "usqp"}


def url_key(url: str) -> str:
    """The key two links to the same article share: for dedup only, never for linking.

    canonical_url() keeps a link that works; this also drops what varies between copies of one
    page: the www./m./amp. host prefix, the AMP path or parameter, a trailing slash, the order
    of the query parameters, and the scheme.
    """
    if not url:
        return ""
    parts = urlsplit(url)
    host = _MOBILE_HOST.sub("", parts.netloc.lower(), count=1)
    path = _AMP_PATH.sub("", parts.path) or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    query = sorted(
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]).lower() not in _AMP_PARAMS
    )
    return f"{host}{path}" + (f"?{'&'.join(query)}" if query else "")


def _without_tracking(query: str) -> str:
    # Filtered on the raw text rather than parse_qsl/urlencode, which would re-encode the
    # parameters that stay and so change URLs that had nothing to remove.
    kept = []
    for pair in query.split("&"):
        key = unquote_plus(pair.partition("=")[0]).lower()
        if pair and not key.startswith("utm_") and key not in _TRACKING_PARAMS:
            kept.append(pair)
    return "&".join(kept)


def to_utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive datetime is taken to be UTC already."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def strip_outlet(title: str, outlet: str) -> str:
    """``title`` without a trailing " - Outlet" (or " – ", " — ", " | ") that names ``outlet``."""
    # Spacing differs between a feed's <title> and its <source>, so both are compared folded.
    outlet = " ".join(outlet.split())
    if not outlet:
        return title
    trimmed = " ".join(title.split())
    for separator in _OUTLET_SEPARATORS:
        suffix = separator + outlet
        # Compare a slice of the original length: casefold() may change the length ("ß" -> "ss").
        # A folded title never starts with a space, so something is always left before the suffix.
        if trimmed[-len(suffix) :].casefold() == suffix.casefold():
            return trimmed[: -len(suffix)].rstrip()
    return title


def normalize(entry: Entry, source: Source, fetched: datetime) -> Item:
    """Turn one parsed entry into the item that matching, storage and rendering work on."""
    full_title = html_to_text(entry.title)
    title = strip_outlet(full_title, entry.outlet) if entry.outlet else full_title
    text = html_to_text(entry.content) or html_to_text(entry.summary)
    headline_only = False
    if not title:
        # RSS 2.0 allows an item with only a description: as feed readers do, its first words
        # are the title (the text stays whole).
        title = headline_from(text)
    else:
        headline_only = _only_repeats_headline(text, (full_title, title), entry.outlet)
    if headline_only:
        text = ""
    # Only http(s) links survive: a guid such as "tag:…" that feedparser copied into the link,
    # or a javascript: URL, gives "" (the item keeps its guid, so it is still stored once).
    url = canonical_url(entry.link, source.url)
    if entry.link and not url:
        log.debug("entry link dropped source=%r guid=%s link=%r", source.name, entry.guid, entry.link)
    fetched = to_utc(fetched)
    published = to_utc(entry.published) if entry.published else fetched
    if published > fetched:
        # A date in the future (wrong clock, wrong time zone, or a feed gaming the ordering)
        # would keep the item on top of every "newest first" list; it cannot be newer than now.
        log.debug("future date clamped source=%r guid=%s published=%s", source.name, entry.guid, published)
        published = fetched
    return Item(
        source=source.name,
        guid=entry.guid,
        url=url,
        title=title,
        text=text,
        published=published,
        fetched=fetched,
        outlet=entry.outlet,
        headline_only=headline_only,
    )


HEADLINE_CHARS = 80  # a title made from the text: about a dozen words


def headline_from(text: str) -> str:
    """The first words of ``text``, about HEADLINE_CHARS of them, cut at a space, with "…" if cut."""
    if len(text) <= HEADLINE_CHARS:
        return text
    cut = text.rfind(" ", 0, HEADLINE_CHARS + 1)
    return text[: cut if cut > HEADLINE_CHARS // 2 else HEADLINE_CHARS].rstrip(" ,;:-–—") + "…"


def _only_repeats_headline(text: str, titles: tuple[str, ...], outlet: str) -> bool:
    """True when ``text`` says nothing beyond the title and the outlet name.

    Aggregators (Google News, Bing News) fill the description with a link to the title and
    the outlet's name. Comparing letters and digits only makes the check blind to the
    punctuation, entities and spacing those descriptions differ in.
    """
    text_key = _letters(text)
    if not text_key:
        return True
    title_keys = [_letters(title) for title in titles]
    outlet_key = _letters(outlet)
    rest = text_key
    for key in (*title_keys, outlet_key):
        if key:
            rest = rest.replace(key, "", 1)
    # A text that is just a piece of the title (a truncated copy, or the outlet alone) is no better.
    # (The letters of "title outlet" are the title's followed by the outlet's.)
    return not rest or any(text_key in key + outlet_key for key in title_keys)


_NOT_LETTERS = re.compile(r"\W+")
# For ASCII text str.translate does the same as _NOT_LETTERS, and faster.
_ASCII_NOT_LETTERS = dict.fromkeys(c for c in range(128) if not (chr(c).isalnum() or chr(c) == "_"))


def _letters(text: str) -> str:
    folded = text.casefold()
    if folded.isascii():
        return folded.translate(_ASCII_NOT_LETTERS)
    return _NOT_LETTERS.sub("", folded)
