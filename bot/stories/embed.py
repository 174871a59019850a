"""Sentence vectors for the story decision: WordLlama's static token embeddings, read offline
from the files the `wordllama` wheel installs, checked against pinned sha256 digests.

WordLlama (l2_supercat, 256 dimensions) is a table of one vector per Llama-2 token; a text's
vector is the mean of its tokens' vectors, normalised. That is numpy work over a 16 MB file:
no network, no model download, nothing heavier than the `tokenizers` library to load, and about
0.1 ms per headline on one core. The `wordllama` package itself is never imported (its
``__init__`` configures the root logger and imports requests/pydantic): only its two data files
are read, from where pip put them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import threading
from importlib import resources
from pathlib import Path

import numpy as np

from bot.errors import StoryModelError

DIM = 256
WEIGHTS = "weights/l2_supercat_256.safetensors"
# The wheel ships its tokenizer under tokenizers/, while wordllama's own loader looks under
# tokenizer/ (and then tries to download it): reading the file directly avoids both.
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
# wordllama==0.4.0.post1 (pinned in pyproject.toml). Another version may ship other vectors,
# and the fitted weights in story_model.json were fitted on these.
SHA256 = {
    WEIGHTS: "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
    TOKENIZER: "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
}
WORD_CACHE = 1 << 16  # words whose token ids are kept (a few MB); cleared when full
MAX_CHARS = 600  # headline + lead: the first sentences carry the event
# The mean vector of news text (bench/story_model.py computes it from the labeled sets' fitting
# weeks). Static embeddings share a large common direction; taking it out before comparing
# spreads the cosines of unrelated items apart: same-story against other pairs of the
# independent set, ROC AUC 0.902 -> 0.925.
CENTER = "embed_center.json"


# A word of running text: letters (with inner apostrophes, hyphens, dots: "O'Brien", "AI-made",
# "U.S"), or a number or amount ("31", "1.2m", "$450K", "40%"). "ba7bfa" and "56319c" are not.
_WORD = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]+)*|[$£€]?\d+(?:[.,]\d+)*(?:%|[kKmMbB][nN]?|pc)?")
_EDGES = "\"'“”‘’()[]{},.:;!?—–-|*"
MIN_WORDS = 2  # one word's vector is that word's: the entities and words say as much
WORD_SHARE = 0.7  # the lowest share of words in a labeled item's headline and lead is 0.83


def says_something(text: str) -> bool:
    """Whether a text is words enough for its vector to mean anything.

    A static embedding is the mean of the text's tokens, so texts made of codes, hashes or
    word fragments all tokenize to the same few pieces and get nearly the same vector (the
    flood of tests/test_faults.py: "CSAM ba7bfa 56319c ..." pairs at cosine 0.7, more than
    most reports of one event). Such a text gets no vector, and is compared by its words only.
    """
    real = words = 0
    for piece in text.split():
        kind = _KINDS.get(piece)
        if kind is None:
            kind = _kind(piece)
        words += kind != _EMPTY
        real += kind == _REAL
    return real >= MIN_WORDS and real >= WORD_SHARE * words


# What each whitespace-separated piece of a text is, from a cache: the same words recur in
# every headline, and matching each against _WORD was a tenth of a matched item's cost.
_EMPTY, _REAL, _OTHER = 0, 1, 2
_KINDS: dict[str, int] = {}


def _kind(piece: str) -> int:
    word = piece.strip(_EDGES)
    kind = _EMPTY if not word else _REAL if _WORD.fullmatch(word) else _OTHER
    if len(_KINDS) >= WORD_CACHE:
        _KINDS.clear()
    _KINDS[piece] = kind
    return kind


def package_dir() -> Path:
    """Where the installed `wordllama` package is, found without importing it."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise StoryModelError("story model: the 'wordllama' package is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations)))


def _verified(path: Path, digest: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StoryModelError(f"{path}: cannot read the embedding model: {e.strerror}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise StoryModelError(
            f"{path}: sha256 differs from the pinned wordllama==0.4.0.post1 file; "
            "reinstall that version (pip install -e .)"
        )
    return data


def _safetensor(data: bytes, name: str) -> np.ndarray:
    """One float16 tensor of a safetensors file (8-byte header length, JSON header, raw data)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    entry = header[name]
    if entry["dtype"] != "F16":
        raise StoryModelError(f"{WEIGHTS}: expected float16 weights, found {entry['dtype']}")
    start, end = entry["data_offsets"]
    return np.frombuffer(data, dtype="<f2", count=(end - start) // 2, offset=8 + size + start).reshape(
        entry["shape"]
    )


class Embedder:
    """Texts -> unit vectors (float32, DIM columns); an empty text gets the zero vector."""

    def __init__(self, directory: Path | None = None, center: np.ndarray | None = None):
        from tokenizers import Tokenizer  # a compiled library: loaded only when vectors are needed

        base = directory or package_dir()
        # float32, not the file's float16: numpy has no float16 arithmetic of its own, and summing
        # a text's rows converted them first (50 us a text, 14 us in float32), for 16 MB more.
        self.matrix = _safetensor(_verified(base / WEIGHTS, SHA256[WEIGHTS]), "embedding.weight").astype(
            np.float32
        )
        if self.matrix.shape[1] != DIM:
            raise StoryModelError(
                f"{base / WEIGHTS}: expected {DIM} dimensions, found {self.matrix.shape[1]}"
            )
        self.tokenizer = Tokenizer.from_str(_verified(base / TOKENIZER, SHA256[TOKENIZER]).decode())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.center = shipped_center() if center is None else center
        self._word_ids: dict[str, tuple[int, ...]] = {}
        # Lower-case words that are one token of the Llama vocabulary: the common words of
        # English. A capitalised word that is not one of them is a name (signals.entities).
        self.common_words = frozenset(
            t[1:]
            for t in self.tokenizer.get_vocab()
            if t.startswith("▁") and t[1:].isalpha() and t[1:].islower()
        )

    def raw(self, texts: list[str]) -> np.ndarray:
        """Unit mean vectors, not centred (what CENTER is computed from)."""
        return self._pool(texts, np.zeros(DIM, dtype=np.float32))

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._pool(texts, self.center)

    def _pool(self, texts: list[str], center: np.ndarray) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        matrix = self.matrix
        # The norms are what np.linalg.norm computes (sqrt of x.x for one vector, of the sum of
        # squares along the rows for a matrix), without its checks: a third of a text's cost.
        for row, text in enumerate(texts):
            if ids := self.token_ids(text[:MAX_CHARS]):
                mean = matrix[ids].sum(axis=0) / len(ids)
                out[row] = mean / (np.sqrt(mean.dot(mean)) or 1.0) - center
        norms = np.sqrt(np.add.reduce(out * out, axis=1, keepdims=True))
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def token_ids(self, text: str) -> list[int]:
        """The text's token ids, a word at a time from a cache: the tokenizer prepends "▁" and
        turns spaces into "▁", and no Llama token spans a "▁" inside it, so the ids of the words
        are the ids of the text (all 2,000 headlines + leads of bench/story_corpus.py, and every
        labeled item), at 5 us a text instead of 85 us in the tokenizer."""
        out: list[int] = []
        cache, vocab = self._word_ids, self.matrix.shape[0]
        for word in text.split():
            found = cache.get(word)
            if found is None:
                encoded = self.tokenizer.encode(word, add_special_tokens=False).ids
                found = tuple(i for i in encoded if 0 <= i < vocab)
                if len(cache) >= WORD_CACHE:
                    cache.clear()
                cache[word] = found
            out.extend(found)
        return out


def shipped_center() -> np.ndarray:
    doc = json.loads(resources.files("bot.stories").joinpath(CENTER).read_text(encoding="utf-8"))
    center = np.asarray(doc["center"], dtype=np.float32)
    if center.shape != (DIM,):
        raise StoryModelError(f"{CENTER}: expected {DIM} numbers")
    return center


_default: Embedder | None = None
_lock = threading.Lock()


def embedder() -> Embedder:
    """The process's one Embedder, loaded on first use (a poll that matches nothing never loads it)."""
    global _default
    with _lock:
        if _default is None:
            _default = Embedder()
        return _default


def embed(texts: list[str]) -> np.ndarray:
    """Vectors from the process's Embedder (loaded on the first call)."""
    return embedder().embed(texts)


def to_blob(vector: np.ndarray) -> bytes:
    """A vector as stored with its fingerprint: float16, half the bytes, cosines within 1e-3."""
    return vector.astype("<f2").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)
