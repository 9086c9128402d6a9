"""WordNet 3.0 word look-ups as DataComp's text-based baseline makes them, and its synset lists.

DataComp's ``does_contain_text_entity`` (``baselines/apply_filter.py``) splits a caption with
``str.split()`` and, for each word, takes ``nltk.corpus.wordnet.synsets(word)[0].offset()`` (NLTK 3.8.1,
WordNet 3.0): the caption is kept when one of these offsets is an ImageNet-21k synset. This module
reads the WordNet 3.0 database files itself and reproduces that look-up: the word lower-cased; parts
of speech in NLTK's order (noun, verb, adjective, adverb); for each, NLTK 3.8.1's ``morphy`` (the
exception list, else the suffix rules applied once, then again and again while nothing is found);
the first offset of the first form found. Only the offset is compared, whatever its part of
speech, as in DataComp's code.

    wn = wordnet()                      # the WordNet 3.0 files found on this machine
    wn.first_offset("Dogs")             # 2084071 (dog.n.01)
    imagenet21k_offsets()               # DataComp's entity set, from timm's imagenet21k_goog_synsets.txt

Where the files come from (:func:`find_wordnet`): ``$WORKBENCH_WORDNET``, NLTK's data folders
(``corpora/wordnet`` or ``corpora/wordnet.zip``, as ``nltk.download("wordnet")`` leaves them), or
Debian's ``wordnet-base`` package (``/usr/share/wordnet``).
"""
from __future__ import annotations

import os
import zipfile
from functools import lru_cache
from pathlib import Path

import polars as pl

from workbench.errors import WorkbenchError
from workbench.io.files import sha256_file
from workbench.scoring.scorers import Scorer

POS_ORDER = ("n", "v", "a", "r")  # nltk's POS_LIST: NOUN, VERB, ADJ, ADV
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
# nltk 3.8.1's WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS, in its order
SUBSTITUTIONS = {
    "n": [("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")],
    "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "r": [],
}
# the list DataComp downloads as imagenet21k_wordnet_ids.txt; timm ships the same bytes
IMAGENET21K_SHA256 = "66362bdedf36d933382edca5493fc562dcc17128ce36403c9e730a75f48cb2f2"
NEEDED = tuple(f"{k}.{v}" for v in _FILES.values() for k in ("index",)) + tuple(f"{v}.exc" for v in _FILES.values())
HOW = ("DataComp's text-based filter needs the WordNet 3.0 database: `python -m nltk.downloader wordnet` "
       "(pip install nltk), or Debian's wordnet-base package (apt-get install wordnet-base), or set "
       "WORKBENCH_WORDNET to a folder holding index.noun, noun.exc, ...")


def _candidates() -> list[Path]:
    out = []
    if os.environ.get("WORKBENCH_WORDNET"):
        out.append(Path(os.environ["WORKBENCH_WORDNET"]))
    roots = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    roots += [str(Path.home() / "nltk_data"), "/usr/share/nltk_data", "/usr/local/share/nltk_data",
              "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]
    for r in roots:
        out += [Path(r) / "corpora" / "wordnet", Path(r) / "corpora" / "wordnet.zip"]
    out.append(Path("/usr/share/wordnet"))
    return out


def find_wordnet() -> Path:
    """The first WordNet 3.0 folder (or NLTK zip) found: see the module's docstring."""
    for p in _candidates():
        if p.is_dir() and all((p / f).is_file() for f in NEEDED):
            return p
        if p.suffix == ".zip" and p.is_file():
            return p
    raise WorkbenchError(HOW)


class WordNet:
    """The index and exception lists of a WordNet 3.0 database, and DataComp's first-synset look-up."""

    def __init__(self, source: Path):
        self.source = Path(source)
        self.index: dict[str, dict[str, list[int]]] = {}
        self.exceptions: dict[str, dict[str, list[str]]] = {}
        for pos, name in _FILES.items():
            for i, line in enumerate(self._lines(f"index.{name}")):
                if line.startswith(" "):
                    continue  # the licence
                f = line.split()
                try:
                    lemma, p, n = f[0], f[1], int(f[2])
                    k = 4 + int(f[3])
                    if n <= 0 or int(f[k]) != n:
                        raise ValueError("synset counts disagree")
                    offsets = [int(x) for x in f[k + 2:k + 2 + n]]
                    if len(offsets) != n:
                        raise ValueError("fewer offsets than synsets")
                except (IndexError, ValueError) as exc:
                    raise WorkbenchError(f"not a WordNet index line ({exc})", self.source / f"index.{name}",
                                         row=i) from None
                self.index.setdefault(lemma, {})[p] = offsets
            self.exceptions[pos] = {}
            for line in self._lines(f"{name}.exc"):
                terms = line.split()
                if terms:
                    self.exceptions[pos][terms[0]] = terms[1:]

    def _lines(self, name: str) -> list[str]:
        try:
            if self.source.suffix == ".zip":
                with zipfile.ZipFile(self.source) as z:
                    data = z.read(f"wordnet/{name}")
            else:
                data = (self.source / name).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise WorkbenchError(f"cannot read the WordNet file {name} ({exc})", self.source) from None
        return data.decode("utf-8").splitlines()

    def morphy(self, form: str, pos: str) -> list[str]:
        """nltk 3.8.1's ``_morphy(form, pos)``: the base forms of `form` that WordNet lists for `pos`."""
        subs = SUBSTITUTIONS[pos]

        def rules(forms):
            return [f[:-len(old)] + new for f in forms for old, new in subs if f.endswith(old)]

        def known(forms):
            out = []
            for f in forms:
                if pos in self.index.get(f, ()) and f not in out:
                    out.append(f)
            return out

        exc = self.exceptions[pos]
        if form in exc:
            return known([form] + exc[form])
        forms = rules([form])
        found = known([form] + forms)
        while not found and forms:
            forms = rules(forms)
            found = known(forms)
        return found

    def first_offset(self, word: str) -> int | None:
        """``wordnet.synsets(word)[0].offset()`` as nltk 3.8.1 gives it; None where it has no synset."""
        word = word.lower()
        for pos in POS_ORDER:
            forms = self.morphy(word, pos)
            if forms:
                return self.index[forms[0]][pos][0]
        return None

    def digest(self) -> str:
        """The sha256 of the files read (a cache key)."""
        if self.source.suffix == ".zip":
            return sha256_file(self.source)
        return ",".join(sha256_file(self.source / f)[:16] for f in NEEDED)


@lru_cache(maxsize=2)
def wordnet(source: str | None = None) -> WordNet:
    """The WordNet at `source` (default :func:`find_wordnet`), read once per process."""
    return WordNet(Path(source) if source else find_wordnet())


def timm_info_file(name: str) -> Path:
    """A file of timm's ``data/_info`` folder (timm comes with open_clip)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.origin:
        raise WorkbenchError(f"the ImageNet-21k synset list ({name}) comes with the timm package: pip install timm")
    path = Path(spec.origin).parent / "data" / "_info" / name
    if not path.is_file():
        raise WorkbenchError(f"timm does not ship {name}", path)
    return path


def read_synset_ids(path: Path, sha256: str | None = None) -> frozenset[int]:
    """The WordNet offsets of a list of synset ids (``n01440764``, one a line), read as DataComp reads
    them (``int(line.strip()[1:])``); `sha256` checked when given."""
    if sha256 and sha256_file(path) != sha256:
        raise WorkbenchError(f"the synset list's sha256 is not the one expected ({sha256})", path)
    out = set()
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        s = line.strip()
        if not s:
            continue
        try:
            out.add(int(s[1:]))
        except ValueError:
            raise WorkbenchError(f"not a synset id: {s[:40]!r} (expected e.g. n01440764)", path, row=i) from None
    if not out:
        raise WorkbenchError("the synset list is empty", path)
    return frozenset(out)


@lru_cache(maxsize=1)
def imagenet21k_offsets() -> frozenset[int]:
    """DataComp's entity set: the 21,843 ImageNet-21k synsets (timm's ``imagenet21k_goog_synsets.txt``,
    the sha256 DataComp's code checks)."""
    return read_synset_ids(timm_info_file("imagenet21k_goog_synsets.txt"), IMAGENET21K_SHA256)


def caption_has_synset(caption: str | None, wn: WordNet, offsets: frozenset[int], memo: dict) -> bool:
    """DataComp's ``does_contain_text_entity``: a word of ``caption.split()`` whose first synset's offset
    is in `offsets` (`memo`: word -> bool, shared across calls)."""
    if caption is None:
        return False
    for w in caption.split():
        hit = memo.get(w)
        if hit is None:
            hit = memo[w] = wn.first_offset(w) in offsets
        if hit:
            return True
    return False


def synset_offsets(spec: str, base: Path | None = None) -> tuple[frozenset[int], str]:
    """(offsets, sha256) of a named synset list (``imagenet-21k``) or a file of synset ids."""
    if spec == "imagenet-21k":
        return imagenet21k_offsets(), IMAGENET21K_SHA256
    path = Path(spec)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_file():
        raise WorkbenchError(f"no synset list {spec!r}: not a named list (imagenet-21k) nor a file", path)
    return read_synset_ids(path), sha256_file(path)


class CaptionSynsetScorer(Scorer):
    """Per shard: whether the caption names one of a list's WordNet synsets, as DataComp's text-based
    filter decides it (:func:`caption_has_synset`). One boolean column; a null caption is False."""

    needs = "metadata"

    def __init__(self, column: str, synsets: str = "imagenet-21k", base: Path | None = None):
        self.column, self.synsets, self.base = column, synsets, base
        self.schema = {column: pl.Boolean}

    def prepare(self, collection) -> None:
        if "caption" not in collection.metadata.collect_schema().names():
            raise WorkbenchError("the synset rule needs captions, which this collection lacks", collection.path)
        wordnet()
        synset_offsets(self.synsets, self.base)

    def spec(self) -> dict:
        return {"scorer": "caption_synsets", "synsets": synset_offsets(self.synsets, self.base)[1],
                "wordnet": wordnet().digest(), "lookup": "nltk 3.8.1 synsets(word)[0].offset(), str.split() words"}

    def shard_frame(self, collection, shard: int) -> pl.DataFrame:
        wn, (offsets, _) = wordnet(), synset_offsets(self.synsets, self.base)
        caps = collection.shard_metadata(shard).select("caption").collect()["caption"].to_list()
        memo: dict = {}
        return pl.DataFrame({self.column: pl.Series([caption_has_synset(c, wn, offsets, memo) for c in caps],
                                                    dtype=pl.Boolean)})

