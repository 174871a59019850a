"""Element and attribute names as feedparser sees them: namespace prefixes mapped to its own, per document.

Part of the fast path (bot/ingest/fastparse.py): the walker there dispatches on these names.
"""

from __future__ import annotations

from collections.abc import Mapping

from feedparser.mixin import _FeedParserMixin
from lxml import etree

from bot.ingest.guard import MAX_ATTRIBUTES


class Refused(Exception):
    """The fast path does not vouch for this document; feedparser must parse it."""


# feedparser maps namespace URIs (lower-cased) to its own prefixes; "" is RSS/Atom/RDF itself.
_MATCH: dict[str, str] = {uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()}
_STANDARD_PREFIXES = frozenset(p for p in _MATCH.values() if p)
_XML_NS = "http://www.w3.org/XML/1998/namespace"


class Namespaces:
    """A document's namespace declarations, and the names feedparser would give its tags and attributes."""

    def __init__(self, declarations: list[tuple[str | None, str]], on_root: Mapping[str | None, str]):
        self.keys: dict[str, str] = {}
        self.namespacemap: dict[str | None, str] = {}  # document prefix -> feedparser prefix
        self.in_use: dict[str, str] = {}  # feedparser's namespaces_in_use
        bound: dict[str, str] = {}
        for prefix, uri in declarations:
            if not uri:
                continue
            if prefix is not None and bound.setdefault(prefix, uri) != uri:
                # feedparser keeps one global prefix table that changes as it reads; a prefix
                # bound twice would make element names depend on where they are.
                raise Refused(f"namespace prefix {prefix!r} bound to two URIs")
            lower = uri.lower()
            if "backend.userland.com/rss" in lower:
                uri = lower = "http://backend.userland.com/rss"
            if lower in _MATCH:
                self.namespacemap[prefix] = _MATCH[lower]
                self.in_use[_MATCH[lower]] = uri
            else:
                self.in_use[prefix or ""] = uri
        for prefix, standard in self.namespacemap.items():
            # xmlns:cc="...creativeCommonsRssModule.html" (Medium does this) makes feedparser read
            # cc:license as creativeCommons_license from that declaration on. Declared on the root,
            # that is everywhere, and _key() does the same; declared deeper, it depends where.
            if prefix in _STANDARD_PREFIXES and standard != prefix and prefix not in on_root:
                raise Refused(f"prefix {prefix!r} names another module's namespace below the root")

    # -- names ------------------------------------------------------------------------------

    def key(self, tag: str) -> str:
        """The name feedparser dispatches on: "title", "dc_date", "media_content", ..."""
        key = self.keys.get(tag)
        if key is None:
            key = self.keys[tag] = self._key(tag)
        return key

    def _key(self, tag: str) -> str:
        if tag[0] != "{":
            return tag.lower()
        uri, _, local = tag[1:].partition("}")
        local = local.lower()
        lower = uri.lower()
        if "backend.userland.com/rss" in lower:
            lower = "http://backend.userland.com/rss"
        prefix = _MATCH.get(lower)
        if prefix == "":
            return local
        if prefix is None:  # an unknown namespace: feedparser uses the first prefix declared for it
            prefix = next((name for name, value in self.in_use.items() if name and value == uri), "")
            if not prefix:
                return local
        prefix = self.namespacemap.get(prefix, prefix)
        return f"{prefix}_{local}" if prefix else local

    def attrs(self, el: etree._Element) -> dict[str, str]:
        """The element's attributes as feedparser's start handlers see them."""
        # lxml's items() is quadratic in the number of attributes (bot.ingest.guard refuses
        # such documents before they get here; this keeps the walker safe on its own).
        if len(el.attrib) > MAX_ATTRIBUTES:
            raise Refused(f"more than {MAX_ATTRIBUTES} attributes on <{el.tag}>")
        items = el.items()
        if not items:
            return {}
        attrs: dict[str, str] = {}
        for name, value in items:
            if name[0] == "{":
                return self._namespaced_attrs(el, items)
            attrs[name.lower()] = value
        # (feedparser sets each attribute a second time, under its name as written; without
        # namespaces that is the same name, and the dict comes out the same.)
        for name in ("rel", "type"):
            if name in attrs:
                attrs[name] = attrs[name].lower()
        return attrs

    def _namespaced_attrs(self, el: etree._Element, items: list[tuple[str, str]]) -> dict[str, str]:
        attrs: dict[str, str] = {}
        for name, value in items:
            if name[0] == "{":
                uri, _, local = name[1:].partition("}")
                prefix = _MATCH.get(uri.lower(), "")
                name = f"{prefix}:{local}" if prefix else local
            attrs[name.lower()] = value
        # feedparser then sets each attribute again under its name as written ("rdf:about", or
        # plain "rel" once more, which matters when an unknown namespace also gave a "rel").
        for name, value in items:
            if name[0] == "{":
                uri, _, local = name[1:].partition("}")
                if uri == _XML_NS:
                    written = "xml"
                else:
                    prefixes = [p for p, u in el.nsmap.items() if u == uri and p]
                    if len(prefixes) != 1:
                        raise Refused(f"attribute {local!r} in a namespace with {len(prefixes)} prefixes")
                    written = prefixes[0]
                name = f"{written}:{local}"
            attrs[name.lower()] = value
        for name in ("rel", "type"):
            if name in attrs:
                attrs[name] = attrs[name].lower()
        return attrs
