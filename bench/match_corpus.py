"""A deterministic corpus of realistic news items and 50 realistic T&S watchlists, for bench/match.py.

(bench/corpus.py is a different generator, for the story-clustering bench.)

No downloads: items are assembled from sentence templates with a seeded random generator, so every run
(and every machine) measures the same texts. Most items are ordinary news (politics, economy, sport,
weather, technology), as in a real feed mix; a few percent are trust-and-safety stories that the
watchlists are written for. Texts carry what real feeds carry: curly quotes, accented names, the odd
URL, and some Spanish, French, Portuguese and German items.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

WATCHLISTS: dict[str, str] = {
    "csam": 'CSAM OR CSEM OR "child sexual abuse material*" OR "child abuse material*" '
    'OR "child abuse image*" OR "child pornography" OR "indecent images of children"',
    "ai-csam": '(AI OR AI-generated OR synthetic OR "stable diffusion") NEAR/8 (CSAM OR "child abuse" '
    'OR "child sexual abuse")',
    "deepfakes": 'deep-fake* OR "face-swap*" OR "synthetic sexual*" '
    "OR (AI-generated AND (nude* OR explicit))",
    "nudify": 'nudif* OR "undress app*" OR "undressing app*" OR "nudify app*" OR "clothes remover"',
    "sextortion": 'sextort* OR "sexual extortion" OR "sexually extort*" OR "financial sextortion"',
    "grooming": 'grooming NEAR/6 (child* OR minor* OR teen* OR online) -"dog grooming" -"pet grooming"',
    "unicef": 'UNICEF OR "United Nations Children* Fund" OR "UN children* agency"',
    "interpol": "INTERPOL OR Europol OR =FBI NEAR/5 (child* OR exploitation)",
    "ecpat": 'ECPAT OR "End Child Prostitution"',
    "ncmec": 'NCMEC OR "National Center for Missing and Exploited Children" OR CyberTipline',
    "iwf": '"Internet Watch Foundation" OR =IWF',
    "thorn": '"Thorn" NEAR/5 (child* OR abuse OR safety) OR "WeProtect Global Alliance"',
    "ncii": '"non-consensual intimate image*" OR NCII OR "revenge porn*" OR "image-based sexual abuse"',
    "trafficking": '"child trafficking" OR "human trafficking" OR "sex trafficking" '
    "OR trafficked NEAR/4 (girl* OR child* OR women)",
    "online-safety-act": '"Online Safety Act" OR "Online Safety Bill" '
    'OR (Ofcom AND (children OR "age check*"))',
    "age-verification": '"age verification" OR "age assurance" OR "age check*" OR "age estimation"',
    "dsa": '"Digital Services Act" OR (=DSA AND (Commission OR platform*))',
    "kosa": '"Kids Online Safety Act" OR KOSA OR "COPPA 2.0"',
    "coppa": 'COPPA OR "Children\'s Online Privacy Protection"',
    "section230": '"Section 230" OR "Communications Decency Act"',
    "earn-it": '"EARN IT Act" OR "STOP CSAM Act"',
    "client-side-scanning": '"client-side scanning" OR "chat control" OR "Chatkontrolle" OR "CSA Regulation"',
    "encryption": '"end-to-end encrypt*" NEAR/10 (child* OR abuse OR police)',
    "esafety": '"eSafety Commissioner" OR eSafety',
    "roblox": "Roblox NEAR/8 (child* OR predator* OR grooming OR safety OR lawsuit*)",
    "discord": "Discord NEAR/8 (child* OR predator* OR extortion OR abuse)",
    "telegram": "Telegram NEAR/8 (CSAM OR abuse OR Durov OR moderation)",
    "tiktok-teens": "TikTok NEAR/6 (teen* OR minor* OR child*)",
    "meta-teens": '(Meta OR Instagram OR Facebook) NEAR/6 (teen* OR minor* OR "child safety")',
    "snapchat": "Snapchat NEAR/8 (teen* OR child* OR drug* OR sextort*)",
    "pornhub": 'Pornhub OR Aylo OR MindGeek OR "adult site*" NEAR/5 (age OR verification)',
    "grok-images": 'Grok NEAR/8 (image* OR nude* OR undress* OR "deep-fake*")',
    "voice-cloning": '"voice clon*" OR "cloned voice*" OR "voice deepfake*"',
    "election-deepfakes": '(deep-fake* OR "AI-generated") NEAR/10 (election* OR candidate* OR ballot*)',
    "self-harm": '"self-harm" OR "suicide content" OR "pro-ana" OR "pro-eating disorder"',
    "terror-content": '"terrorist content" OR TVEC OR GIFCT OR "violent extremist content"',
    "hate-speech": '"hate speech" NEAR/8 (platform* OR online OR moderation)',
    "doxxing": "doxx* OR doxing OR swatting",
    "child-marriage": '"child marriage" OR "forced marriage"',
    "missing-children": '"missing child*" OR "Amber Alert"',
    "school-phones": '("smartphone ban" OR "phone ban") NEAR/6 (school* OR pupil* OR student*)',
    "social-media-ban": '"social media ban" OR ("under-16*" NEAR/5 "social media")',
    "es-explotacion": '"explotación sexual infantil" OR "abuso sexual infantil" OR "pornografía infantil" '
    'OR "material de abuso sexual"',
    "fr-pedocriminalite": 'pédocriminalité OR pédopornographie OR "exploitation sexuelle des enfants" '
    "OR hypertrucage*",
    "de-missbrauch": "Kindesmissbrauch* OR Missbrauchsdarstellung* OR Kinderpornografie OR Cybergrooming",
    "pt-abuso": '"abuso sexual infantil" OR "exploração sexual" OR "pornografia infantil"',
    "regulators-title": "title:(Ofcom OR eSafety OR FTC OR CNIL OR Arcom) NEAR/6 (child* OR minor* OR teen*)",
    "un-source": 'source:"UN News" AND (child* OR violence OR exploitation)',
    "apple-neuralhash": '"NeuralHash" OR (Apple NEAR/5 (CSAM OR "child safety" OR scanning))',
    "platform-moderation": '"content moderation" NEAR/6 (child* OR abuse OR "trust and safety") -satire',
}

_SOURCES = ["Reuters World", "AP Top News", "BBC News", "UN News", "Le Monde", "El País", "DW", "Folha"]

_PLACES = ["Brussels", "Washington", "London", "Paris", "Berlin", "Madrid", "São Paulo", "Zürich", "Canberra",
           "Nairobi", "Jakarta", "Ottawa", "Dublin", "Montréal", "Kraków", "Seoul", "Lagos", "Lima"]
_PEOPLE = ["José Álvarez", "Anna Müller", "François Dubois", "Chloé Martin", "João Silva", "Ola Nordmann",
           "Priya Raman", "Liam O’Brien", "Søren Kierkegaard Jr.", "María José Pérez", "Zoë Hart"]
_ORGS = ["the central bank", "the finance ministry", "the European Commission", "the city council",
         "the football association", "the weather service", "the transport authority", "the parliament",
         "the health ministry", "the energy regulator", "a consumer group", "the opposition party"]

_ORDINARY_TITLES = [
    "{org_c} raises interest rates by a quarter point",
    "Storm brings flooding to {place} as rivers burst their banks",
    "{person} wins re-election in {place} after tight race",
    "Inflation eases for third month, {org} says",
    "{place} marathon draws record crowd despite heat",
    "Tech shares slide as chipmakers warn on demand",
    "Train drivers strike over pay in {place}",
    "New stadium plan for {place} approved by {org}",
    "{person}: “We will not back down on pensions”",
    "Wildfire season starts early in the south, officials warn",
    "Electric car sales rise 20% in first quarter",
    "Parliament debates budget amid coalition tensions",
    "{place} hosts climate talks as emissions keep rising",
    "Airline cancels flights after software outage",
    "Museum returns looted artefacts to {place}",
    "Champions League: late goal sends {place} side through",
    "Housing prices in {place} fall for the first time in a decade",
    "Startup raises $40m to build AI chips for phones",
    "Court rules on water rights dispute between farmers and {org}",
    "Heatwave warning issued for {place} and surrounding region",
]

_ORDINARY_SENTENCES = [
    "{org_c} said on {day} that it expected growth to slow in the second half of the year.",
    "Officials in {place} described the situation as “serious but under control”.",
    "{person}, a spokesperson for {org}, told reporters the decision had not been easy.",
    "The move follows months of negotiations between unions and employers.",
    "Analysts had expected a smaller change, according to a survey published last week.",
    "Residents were advised to avoid travel and follow updates from {org}.",
    "The plan still needs approval from lawmakers, who return from recess next month.",
    "Shares in the company fell 3.4% in early trading before recovering slightly.",
    "Critics say the measures do not go far enough, while supporters call them a first step.",
    "The report, which covers 2019 to 2024, found wide differences between regions.",
    "More details are available at https://www.example.org/press/2024-report.",
    "It is the third such event this year, after similar incidents in March and June.",
    "Temperatures are expected to reach 38°C in parts of {place} on {day}.",
    "The company’s chief executive said new products would launch before the holidays.",
    "Police said no one was injured and the road reopened after two hours.",
    "Voters will be asked to approve the proposal in a referendum next spring.",
    "The team’s coach praised the players’ resilience after a difficult season.",
    "Prices for electricity and gas have fallen since the winter, easing pressure on households.",
    "{person} said the agency would publish its full findings later this year.",
    "The ministry declined to comment on the figures before their official release.",
]

_FOREIGN = [
    ("El gobierno aprueba el presupuesto para {place}",
     "El Gobierno aprobó el martes un presupuesto que, según {person}, “garantiza la estabilidad”. "
     "La oposición criticó la falta de inversión en educación y sanidad pública."),
    ("La ville de {place} lance un plan pour le vélo",
     "La mairie a présenté jeudi un plan de 200 kilomètres de pistes cyclables. « C’est un tournant », "
     "a déclaré {person}, adjointe chargée des transports, devant le conseil municipal."),
    ("Bundesregierung plant neue Förderung für Wärmepumpen",
     "Die Bundesregierung will den Einbau von Wärmepumpen stärker fördern. Verbraucherschützer begrüßten "
     "die Pläne, forderten aber mehr Beratung für Hausbesitzer in ländlichen Regionen."),
    ("Prefeitura de {place} anuncia novas linhas de ônibus",
     "A prefeitura anunciou nesta segunda-feira três novas linhas de ônibus. Segundo {person}, a "
     "mudança deve reduzir o tempo de viagem em até vinte minutos nos horários de pico."),
]

_TS_TITLES = [
    "UNICEF calls on governments to criminalize AI-generated child abuse material",
    "Police dismantle network sharing child sexual abuse material on Telegram",
    "Nudify apps removed from app stores after investigation",
    "FBI warns of surge in financial sextortion targeting teenage boys",
    "Ofcom publishes children’s safety codes under the Online Safety Act",
    "Roblox sued by parents over child grooming claims",
    "Deepfake nude images of students spread at {place} school",
    "Europol operation identifies 300 victims of online child exploitation",
    "eSafety Commissioner orders platforms to report on CSAM detection",
    "Meta expands teen accounts to Facebook and Messenger",
    "EU lawmakers clash over chat control and end-to-end encryption",
    "Explotación sexual infantil: detenidos 12 en una operación en {place}",
    "Pédocriminalité en ligne : l’Arcom saisie par des associations",
    "Kindesmissbrauch: Ermittler heben Plattform im Darknet aus",
    "Internet Watch Foundation reports record number of AI-generated abuse images",
]

_TS_SENTENCES = [
    "The agency said AI-generated images depicting the sexual abuse of children were spreading fast.",
    "Investigators said the suspects used encrypted apps to share child sexual abuse material.",
    "So-called nudify apps, which digitally undress photos, were downloaded millions of times.",
    "Sextortion cases, in which offenders threaten to share intimate images, have risen sharply.",
    "The regulator said platforms must introduce age checks to protect children from harmful content.",
    "Parents allege the platform failed to stop predators grooming children online.",
    "The deep-fake images were created from photos posted on social media, police said.",
    "Child-protection groups including ECPAT and NCMEC welcomed the move.",
    "Under the Digital Services Act, very large platforms must assess risks to minors.",
    "Tips to the CyberTipline topped 36 million last year, according to the centre.",
]

_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _fill(template: str, rng: random.Random) -> str:
    org = rng.choice(_ORGS)
    return template.format(
        place=rng.choice(_PLACES),
        person=rng.choice(_PEOPLE),
        org=org,
        org_c=org[0].upper() + org[1:],
        day=rng.choice(_DAYS),
    )


def _lead(sentences: list[str], rng: random.Random, low: int = 300, high: int = 600) -> str:
    target = rng.randint(low, high)
    out: list[str] = []
    while sum(len(s) + 1 for s in out) < target:
        out.append(_fill(rng.choice(sentences), rng))
    return " ".join(out)


def items(count: int, *, seed: int = 20260205, ts_share: float = 0.04) -> Iterator[tuple[str, str, str]]:
    """``count`` (title, text, source) triples; about ``ts_share`` of them are T&S stories."""
    rng = random.Random(seed)
    for _ in range(count):
        source = rng.choice(_SOURCES)
        roll = rng.random()
        if roll < ts_share:
            title = _fill(rng.choice(_TS_TITLES), rng)
            mixed = _TS_SENTENCES + _ORDINARY_SENTENCES[:6]
            text = _lead(mixed, rng)
        elif roll < ts_share + 0.08:
            title, body = rng.choice(_FOREIGN)
            title = _fill(title, rng)
            text = _fill(body, rng) + " " + _lead(_ORDINARY_SENTENCES, rng, 150, 350)
        else:
            title = _fill(rng.choice(_ORDINARY_TITLES), rng)
            text = _lead(_ORDINARY_SENTENCES, rng)
        if rng.random() < 0.4:  # about half of real feeds use straight quotes
            text = text.replace("’", "'").replace("“", '"').replace("”", '"')
        yield title, text, source
