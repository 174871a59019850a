"""A deterministic corpus of synthetic news feeds for bench/poll.py (seeded; no downloads).

``feed(index, items)`` returns the same bytes on every run and machine. Feeds come in the shapes
real news sources serve, in roughly the proportions a T&S source list has:

* RSS 2.0 from a CMS (WordPress-like): CDATA description teaser + full ``content:encoded``,
  ``dc:creator``, categories, ``isPermaLink="false"`` guids, tracking parameters on links;
* RSS 2.0 from a newsroom: entity-escaped HTML descriptions, permalink guids, ``media:content``,
  ``media:thumbnail``, enclosures, dates in several zones;
* Atom 1.0: ``tag:`` ids, HTML summary and content, authors, categories;
* RSS 1.0 (RDF) with Dublin Core dates;
* news-search aggregators shaped like Google News: headline-only items, "Title - Outlet",
  ``<source url>``.

Each item reports a *story*. Most stories are reported once; about one item in six is a syndicated
copy of a story another source also carries (reworded headline, edited lead, own URL), and some
copies link the very same article (other tracking parameters), as wire stories do. About 4% of the
stories are the trust-and-safety news the watchlists in config/newsalert.toml are written for.
Texts are built from sentence templates plus generated proper names and figures, so headlines are
as distinct as real ones (a corpus of a few hundred repeating headlines would make every item
look like every other to the story clustering, which real news does not).

Dates descend from a fixed instant (BASE) a few minutes apart per item, so the bytes never depend
on the clock; bench/poll.py turns the first-poll window off so that every match alerts.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape

BASE = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SHAPES = ("cms", "cms", "cms", "newsroom", "newsroom", "newsroom", "atom", "atom", "rdf", "search")
SYNDICATED_SHARE = 0.16
SAME_URL_SHARE = 0.25  # of the syndicated copies: the same article, reached through another link
TS_SHARE = 0.04
_POOL = 4000  # stories that several sources may carry

_SYLLABLES = (
    "ka ri vel tan mor sel ost bra lin dur mer ga to pe lum sar ven cor dal fin har is nor "
    "ul mi bo tre pas quen ro zan fel gor"
).split()
_PLACES = (
    "Brussels Washington London Paris Berlin Madrid Nairobi Jakarta Ottawa Dublin Lagos Lima Seoul "
    "Manila Toronto Sydney Mumbai Warsaw Lisbon Vienna Oslo Athens Cairo Accra Quito Dakar"
).split()
_ORGS = (
    "the central bank|the finance ministry|the European Commission|the city council|the transport "
    "authority|the parliament|the health ministry|the energy regulator|a consumer group|the opposition "
    "party|the weather service|the football association|the supreme court|the electoral commission"
).split("|")
_VERBS = (
    "approves|rejects|delays|announces|unveils|cuts|raises|probes|blocks|backs|questions|expands|ends"
).split("|")
_THINGS = (
    "budget|rail plan|tax reform|housing bill|water deal|trade pact|pension change|school reform|"
    "stadium project|wind farm|airport expansion|bus contract|data centre|port upgrade|clinic network"
).split("|")
_SENTENCES = [
    "{org_c} said on {day} that the {thing} would cost {n} million {currency} over five years.",
    "Officials in {place} described the {thing} as “a turning point” for the region.",
    "{person}, a spokesperson for {org}, told reporters the decision had not been easy.",
    "The move follows months of talks between {person} and {org}.",
    "Analysts at {firm} had expected a smaller change, according to a note published on {day}.",
    "The plan still needs approval from lawmakers, who return from recess in {month}.",
    "Shares in {firm} fell {pct}% in early trading before recovering slightly.",
    "Critics say the {thing} does not go far enough, while {person} called it a first step.",
    "The report, which covers 2019 to 2025, found wide differences between regions of {place}.",
    "More details are published at https://www.{site}.example/press/{n}.",
    "Temperatures are expected to reach {deg}°C in parts of {place} on {day}.",
    "Police said no one was injured and the road to {place} reopened after {h} hours.",
    "Voters in {place} will be asked to approve the {thing} in a referendum in {month}.",
    "{person} said {org} would publish its full findings later this year.",
]
_TS_TITLES = [
    "UNICEF warns of AI-generated child sexual abuse material as {person} case reaches {place}",
    "Police in {place} dismantle {firm} network sharing child sexual abuse material",
    "Nudify apps including {firm} removed from app stores after {place} investigation",
    "{n} teenagers targeted by sextortion gang run from {place}, {org} says",
    "Deepfake nude images of students spread at {place} school; {person} demands action",
    "{place} regulator fines {firm} over CSAM detection failures",
]
_TS_SENTENCES = [
    "The agency said AI-generated images depicting the sexual abuse of children were spreading fast.",
    "Investigators said the suspects used encrypted apps to share child sexual abuse material.",
    "So-called nudify apps, which digitally undress photos, were downloaded {n} times.",
    "Sextortion cases, in which offenders threaten to share intimate images, rose {pct}%.",
    "UNICEF and {org} called on {firm} to remove deepfake tools from its platform.",
]
_DAYS = "Monday Tuesday Wednesday Thursday Friday".split()
_MONTHS = "January February March April May June July September October November".split()
_CURRENCIES = "euros dollars pounds pesos rand".split()
_ZONES = ["+0000", "GMT", "-0500", "+0100", "+0530", "EST", "-0800", "+0200"]
_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_OUTLETS = (
    "Reuters|AP|AFP|BBC News|The Guardian|Le Monde|El País|DW|NPR|Al Jazeera|The Hindu|Folha|"
    "Euronews|ABC News|The Independent|Politico|The Verge|Wired|TechCrunch|The Irish Times"
).split("|")


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


class _Story:
    """What every report of one story shares: its names and figures, and its headline and lead."""

    def __init__(self, story: int):
        rng = random.Random(story * 7919 + 13)
        org = rng.choice(_ORGS)
        self.ts = rng.random() < TS_SHARE
        self.fill = {
            "person": f"{_name(rng)} {_name(rng, 3)}",
            "firm": _name(rng, 3) + rng.choice(["", " Group", " Labs", " Media", " Holdings"]),
            "place": rng.choice(_PLACES),
            "org": org,
            "org_c": org[0].upper() + org[1:],
            "thing": rng.choice(_THINGS),
            "verb": rng.choice(_VERBS),
            "n": str(rng.randint(2, 9000)),
            "pct": f"{rng.randint(1, 40)}.{rng.randint(0, 9)}",
            "deg": str(rng.randint(25, 44)),
            "h": str(rng.randint(2, 9)),
            "day": rng.choice(_DAYS),
            "month": rng.choice(_MONTHS),
            "currency": rng.choice(_CURRENCIES),
            "site": _name(rng).lower(),
        }
        if self.ts:
            self.title = rng.choice(_TS_TITLES).format(**self.fill)
            pool = _TS_SENTENCES + _SENTENCES[:4]
        else:
            self.title = "{org_c} {verb} {thing} in {place} after {person} intervenes".format(**self.fill)
            if rng.random() < 0.5:
                self.title = "{person}: {place} {thing} will cost {n} million".format(**self.fill)
            pool = _SENTENCES
        self.sentences = [rng.choice(pool).format(**self.fill) for _ in range(rng.randint(5, 9))]
        self.slug = "-".join(self.title.lower().replace(":", "").replace(";", "").split()[:8])
        self.outlet = rng.choice(_OUTLETS)
        self.article = f"https://www.{self.fill['site']}.example/{2026}/{story % 12 + 1:02d}/{self.slug}"


def _story_of(index: int, k: int, items: int, rng: random.Random) -> tuple[int, bool]:
    """(story number, same article as the other copies) for item ``k`` of feed ``index``."""
    if rng.random() < SYNDICATED_SHARE:
        return 10_000_000 + rng.randrange(_POOL), rng.random() < SAME_URL_SHARE
    return index * items + k, False


def _reword(title: str, rng: random.Random) -> str:
    # A desk's own headline: a prefix, a word dropped, or the order of the two halves swapped.
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(["UPDATE 1-", "EXCLUSIVE: ", "Breaking: "]) + title
    words = title.split()
    if roll < 0.6 and len(words) > 6:
        del words[rng.randrange(1, len(words) - 1)]
        return " ".join(words)
    return title


def _rfc822(when: datetime, zone: str) -> str:
    offsets = {"GMT": 0, "EST": -5 * 60, "+0000": 0}
    if zone in offsets:
        minutes = offsets[zone]
    else:
        sign = -1 if zone[0] == "-" else 1
        minutes = sign * (int(zone[1:3]) * 60 + int(zone[3:5]))
    local = when + timedelta(minutes=minutes)
    return format_datetime(local.replace(tzinfo=None)).removesuffix(" -0000") + " " + zone


def _paragraphs(sentences: list[str], rng: random.Random, media: bool) -> str:
    out = []
    for i in range(0, len(sentences), 2):
        out.append("<p>" + " ".join(escape(s, quote=False) for s in sentences[i : i + 2]) + "</p>")
        if media and i == 2:
            out.append(
                f'<figure><img src="https://cdn.example/img/{rng.randrange(10**6)}.jpg" alt="Photo: '
                f'{_name(rng)} / Agency" width="800" height="450"/>'
                "<figcaption>File photo.</figcaption></figure>"
            )
    return "".join(out)


def _items(index: int, items: int, shape: str) -> list[dict]:
    rng = random.Random(index * 104729 + 7)
    site = f"news{index}.example"
    step = timedelta(minutes=rng.randint(5, 60))
    start = BASE - timedelta(minutes=rng.randint(0, 180))
    zone = rng.choice(_ZONES)
    out = []
    for k in range(items):
        number, same_url = _story_of(index, k, items, rng)
        story = _Story(number)
        copy = number >= 10_000_000
        title = _reword(story.title, rng) if copy else story.title
        sentences = list(story.sentences)
        if copy:  # an edited lead: a sentence dropped or added
            if rng.random() < 0.5 and len(sentences) > 3:
                del sentences[rng.randrange(len(sentences))]
            else:
                sentences.append(rng.choice(_SENTENCES).format(**story.fill))
        post = rng.randrange(10**6)
        if same_url:
            link = f"{story.article}?utm_source=feed{index}&utm_medium=rss"
        else:
            path = f"{2026}/{(k % 12) + 1:02d}/{story.slug}-{post}/"
            link = f"https://{site}/{path}?utm_source=rss&utm_medium=rss"
        out.append(
            {
                "title": title,
                "sentences": sentences,
                "link": link,
                "post": post,
                "when": start - step * k,
                "zone": zone,
                "author": f"{_name(rng)} {_name(rng, 3)}",
                "tags": [story.fill["place"], story.fill["thing"].split()[0].capitalize()],
                "outlet": story.outlet,
                "site": site,
                "rng": rng,
            }
        )
    return out


def _cms(index: int, entries: list[dict]) -> str:
    parts = []
    for e in entries:
        rng = e["rng"]
        teaser = escape(" ".join(e["sentences"][:2]), quote=False)
        full = _paragraphs(e["sentences"], rng, media=True)
        cats = "".join(f"<category><![CDATA[{t}]]></category>" for t in e["tags"])
        parts.append(
            f"""<item>
<title>{escape(e["title"], quote=False)}</title>
<link>{escape(e["link"])}</link>
<comments>https://{e["site"]}/?p={e["post"]}#respond</comments>
<dc:creator><![CDATA[{e["author"]}]]></dc:creator>
<pubDate>{_rfc822(e["when"], e["zone"])}</pubDate>
{cats}
<guid isPermaLink="false">https://{e["site"]}/?p={e["post"]}</guid>
<description><![CDATA[<p>{teaser} […]</p>
<p>The post <a rel="nofollow" href="{escape(e["link"])}">{escape(e["title"])}</a> appeared first on \
News {index}.</p>]]></description>
<content:encoded><![CDATA[{full}]]></content:encoded>
<wfw:commentRss>https://{e["site"]}/{e["post"]}/feed/</wfw:commentRss>
<slash:comments>{rng.randrange(40)}</slash:comments>
</item>
"""
        )
    return f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
\txmlns:content="http://purl.org/rss/1.0/modules/content/"
\txmlns:wfw="http://wellformedweb.org/CommentAPI/"
\txmlns:dc="http://purl.org/dc/elements/1.1/"
\txmlns:atom="http://www.w3.org/2005/Atom"
\txmlns:sy="http://purl.org/rss/1.0/modules/syndication/"
\txmlns:slash="http://purl.org/rss/1.0/modules/slash/">
<channel>
\t<title>News {index}</title>
\t<atom:link href="https://news{index}.example/feed/" rel="self" type="application/rss+xml" />
\t<link>https://news{index}.example</link>
\t<description>Independent news, {index}</description>
\t<lastBuildDate>{_rfc822(BASE, "+0000")}</lastBuildDate>
\t<language>en-US</language>
\t<sy:updatePeriod>hourly</sy:updatePeriod>
\t<sy:updateFrequency>1</sy:updateFrequency>
\t<generator>https://wordpress.org/?v=6.5</generator>
{"".join(parts)}</channel>
</rss>
"""


def _newsroom(index: int, entries: list[dict]) -> str:
    parts = []
    for e in entries:
        rng = e["rng"]
        body = escape(_paragraphs(e["sentences"][:4], rng, media=False), quote=False)
        image = f"https://cdn.example/{index}/{e['post']}.jpg"
        parts.append(
            f"""  <item>
    <title>{escape(e["title"], quote=False)}</title>
    <link>{escape(e["link"])}</link>
    <guid>{escape(e["link"])}</guid>
    <pubDate>{_rfc822(e["when"], e["zone"])}</pubDate>
    <description>{body}</description>
    <author>desk@news{index}.example ({e["author"]})</author>
    <category>{escape(e["tags"][0])}</category>
    <media:content url="{image}" medium="image" width="1200" height="675">
      <media:credit>{e["author"]}</media:credit>
    </media:content>
    <media:thumbnail url="{image}?w=240" width="240" height="135"/>
    <enclosure url="{image}" length="{rng.randrange(10**5, 10**6)}" type="image/jpeg"/>
  </item>
"""
        )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
  <title>Newsroom {index} - Top stories</title>
  <link>https://news{index}.example/</link>
  <description>The latest headlines from Newsroom {index}</description>
  <atom:link href="https://news{index}.example/rss" rel="self" type="application/rss+xml"/>
  <image><url>https://news{index}.example/logo.png</url><title>Newsroom {index}</title>\
<link>https://news{index}.example/</link></image>
  <ttl>15</ttl>
{"".join(parts)}</channel>
</rss>
"""


def _atom(index: int, entries: list[dict]) -> str:
    parts = []
    for e in entries:
        rng = e["rng"]
        when = e["when"].isoformat().replace("+00:00", "Z")
        summary = escape(" ".join(e["sentences"][:2]), quote=False)
        content = escape(_paragraphs(e["sentences"], rng, media=rng.random() < 0.5), quote=False)
        parts.append(
            f"""  <entry>
    <id>tag:news{index}.example,2026:article-{e["post"]}</id>
    <title type="html">{escape(escape(e["title"], quote=False), quote=False)}</title>
    <link rel="alternate" type="text/html" href="{escape(e["link"])}"/>
    <link rel="replies" type="application/atom+xml" href="https://news{index}.example/c/{e["post"]}.atom"/>
    <published>{when}</published>
    <updated>{when}</updated>
    <author><name>{e["author"]}</name><uri>https://news{index}.example/staff</uri></author>
    <category term="{escape(e["tags"][0])}"/>
    <summary type="html">&lt;p&gt;{escape(summary, quote=False)}&lt;/p&gt;</summary>
    <content type="html">{content}</content>
  </entry>
"""
        )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <title>Atom News {index}</title>
  <subtitle>Reporting from {index}</subtitle>
  <link rel="self" href="https://news{index}.example/atom.xml"/>
  <link rel="alternate" type="text/html" href="https://news{index}.example/"/>
  <id>tag:news{index}.example,2026:feed</id>
  <updated>{BASE.isoformat().replace("+00:00", "Z")}</updated>
  <generator uri="https://example.org/gen" version="2.1">Gen</generator>
{"".join(parts)}</feed>
"""


def _rdf(index: int, entries: list[dict]) -> str:
    seq = "".join(f'<rdf:li rdf:resource="{escape(e["link"])}"/>' for e in entries)
    parts = []
    for e in entries:
        parts.append(
            f"""<item rdf:about="{escape(e["link"])}">
<title>{escape(e["title"], quote=False)}</title>
<link>{escape(e["link"])}</link>
<description>{escape(" ".join(e["sentences"][:4]), quote=False)}</description>
<dc:creator>{e["author"]}</dc:creator>
<dc:subject>{escape(e["tags"][0])}</dc:subject>
<dc:date>{e["when"].isoformat()}</dc:date>
</item>
"""
        )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://news{index}.example/rss">
<title>RDF News {index}</title>
<link>https://news{index}.example/</link>
<description>Headlines, RSS 1.0</description>
<items><rdf:Seq>{seq}</rdf:Seq></items>
</channel>
{"".join(parts)}</rdf:RDF>
"""


def _search(index: int, entries: list[dict]) -> str:
    parts = []
    for e in entries:
        rng = e["rng"]
        token = "".join(rng.choice(_TOKEN_CHARS) for _ in range(60))
        url = f"https://news.google.example/rss/articles/CBMi{token}?oc=5"
        title = f"{e['title']} - {e['outlet']}"
        home = f"https://www.{e['outlet'].lower().replace(' ', '')}.example"
        description = (
            f'<a href="{escape(url)}" target="_blank">{escape(e["title"], quote=False)}</a>'
            f'&nbsp;&nbsp;<font color="#6f6f6f">{escape(e["outlet"], quote=False)}</font>'
        )
        parts.append(
            f"""<item><title>{escape(title, quote=False)}</title><link>{escape(url)}</link>\
<guid isPermaLink="false">CBMi{token}</guid><pubDate>{_rfc822(e["when"], "GMT")}</pubDate>\
<description>{escape(description, quote=False)}</description>\
<source url="{home}">{escape(e["outlet"], quote=False)}</source>\
</item>"""
        )
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><rss version="2.0" '
        'xmlns:media="http://search.yahoo.com/mrss/"><channel><generator>NFE/5.0</generator>'
        f'<title>"search {index}" - Google News</title><link>https://news.google.example/search?q={index}</link>'
        f"<language>en-US</language><webMaster>news-webmaster@google.example</webMaster>"
        f"<copyright>2026 Google LLC</copyright><lastBuildDate>{_rfc822(BASE, 'GMT')}</lastBuildDate>"
        f"<description>Google News</description>{''.join(parts)}</channel></rss>"
    )


_WRITERS = {"cms": _cms, "newsroom": _newsroom, "atom": _atom, "rdf": _rdf, "search": _search}


def shape(index: int) -> str:
    return SHAPES[(index * 7) % len(SHAPES)]


def feed(index: int, items: int = 50) -> bytes:
    """The bytes of feed ``index`` (0-based), with ``items`` items; the same on every run."""
    kind = shape(index)
    return _WRITERS[kind](index, _items(index, items, kind)).encode("utf-8")


def content_type(index: int) -> str:
    return "application/atom+xml" if shape(index) == "atom" else "application/rss+xml; charset=UTF-8"


if __name__ == "__main__":  # a quick look: sizes per shape
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    total = 0
    by_shape: dict[str, int] = {}
    for i in range(n):
        size = len(feed(i))
        total += size
        by_shape[shape(i)] = by_shape.get(shape(i), 0) + size
    print(f"{n} feeds, {total / 1e6:.1f} MB, {total / n / 1024:.1f} KiB per feed")
    for name, size in sorted(by_shape.items()):
        print(f"  {name:9s} {size / 1e6:6.2f} MB")
