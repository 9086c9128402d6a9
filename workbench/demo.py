"""The SYNTHETIC demo world: a teaching collection in the LAION / clip-retrieval layout, with ground truth.

Nothing here is a real image, a real caption crawl or a real CLIP model. The world is generated,
deterministically from a seed, in a small known *concept space*:

- every concept (``cat``, ``beach``, ``painting``, ``watermark``, ``child``, the unsafe stand-ins
  ``unsafe_explicit`` / ``unsafe_gore`` ...) is a random unit vector, the base directions
  orthonormal; objects and styles lean towards a latent parent (cat and dog share ``animal``,
  painting and cartoon share ``artwork``), so broad words ("animal", "illustration") work too;
- an image embedding is ``normalise(a*m_img + b*normalise(sum_k w_k c_k) + sigma*noise)``: the
  concepts it shows, plus a shared offset ``m_img`` (CLIP's "modality gap") and noise;
- a caption embedding is :class:`DemoTextEncoder` applied to the caption: a bag of words mapped
  to concepts through a vocabulary/synonym table (unknown words get a small hash vector), plus the
  text offset ``m_txt``. The ``text_emb`` of every row *is* ``encode(caption)`` (stored as
  float16), so prompt search over the collection and the encoder agree;
- metadata columns follow LAION-5B (+ LAION-400M's ``NSFW`` tag), and ``ground_truth/`` says, for
  every row, what its image really shows, what kind of caption it got and which rows duplicate it,
  so the precision and recall of every filter can be measured.

The unsafe concepts are stand-ins (random directions with a name): there is no explicit content
anywhere; some of their captions carry the tame keywords text audits look for ('adult', 'xxx',
'hot ', 'sexy', 'nsfw').

Files (beside the usual ``img_emb/``, ``text_emb/``, ``metadata/``, ``manifest.json``)::

    world/world.json               generator, seed, parameters, concept names, vocabulary (the word "synthetic")
    world/concepts.npy             (n_concepts, dim) float32 concept vectors
    world/offsets.npy              (2, dim) float32: m_img, m_txt
    ground_truth/truth_<i>.parquet one per shard, rows in collection order

Tuned so that, as in LAION (REFERENCE.md): cosine(image, own caption) is about 0.32 +- 0.035 for a
matching caption and about 0.12 for a caption of an unrelated row (0.28 over all rows, junk and
partial captions included); punsafe > 0.5 about 3%; pwatermark > 0.8 about 5%.
Rows are generated in blocks of 10,000 (the world does not depend on the shard size) and streamed
to the :class:`~workbench.writer.ShardWriter`: memory stays bounded for any number of rows.
"""
from __future__ import annotations

import json
import math
import random
import re
import shutil
import sys
from pathlib import Path

import mmh3
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import LayoutError, WriteError
from .layouts import numbered_files

GENERATOR = "workbench.demo"
GENERATOR_VERSION = 1
MODEL_NAME = "demo-synthetic"
BLOCK_ROWS = 10_000  # rows generated at once; also img2dataset's shard size, which `key` follows
WORLD_JSON = "world/world.json"
CONCEPTS_NPY = "world/concepts.npy"
OFFSETS_NPY = "world/offsets.npy"
TRUTH_DIR = "ground_truth"
_OWN_ENTRIES = {"img_emb", "text_emb", "metadata", "ground_truth", "world", ".staging"}

# ------------------------------------------------------------------------------------------------
# The concept space
# ------------------------------------------------------------------------------------------------
PARENTS = ("animal", "vehicle", "plant", "food", "furniture", "clothing", "toy", "thing", "photographic", "artwork")
OBJECTS = {  # object -> parent (a latent concept mixed into the object's vector)
    "cat": "animal", "dog": "animal", "bird": "animal", "horse": "animal", "cow": "animal",
    "car": "vehicle", "bicycle": "vehicle", "boat": "vehicle", "airplane": "vehicle",
    "flower": "plant", "tree": "plant", "pizza": "food", "cake": "food", "cup": "food",
    "chair": "furniture", "house": None, "book": "thing", "camera": "thing", "clock": "thing",
    "guitar": "thing", "shoe": "clothing", "dress": "clothing", "teddy bear": "toy",
}
STYLE_PARENTS = {"photo": "photographic", "vintage": "photographic", "painting": "artwork", "sketch": "artwork",
                 "cartoon": "artwork", "3d render": "artwork"}
SCENES = ("beach", "city street", "forest", "kitchen", "mountain", "snow", "night", "office", "garden",
          "studio", "bedroom")
STYLES = ("photo", "painting", "sketch", "cartoon", "3d render", "vintage")
MARKS = ("watermark", "text overlay")
PEOPLE = ("person", "child")
UNSAFE = ("unsafe_explicit", "unsafe_gore")
OBJECT_NAMES = tuple(OBJECTS)
CONCEPTS = OBJECT_NAMES + SCENES + STYLES + MARKS + PEOPLE + UNSAFE + PARENTS
_CI = {c: i for i, c in enumerate(CONCEPTS)}

# The geometry (tuned; see the module docstring). Stored in world.json so the encoder needs nothing else.
# Changing it, the vocabulary or the generation changes the world: bump GENERATOR_VERSION.
GEOMETRY = {
    "img_offset": 0.68,     # a: weight of m_img in an image
    "img_content": 0.55,    # weight of the (normalised) concept mixture in an image
    "img_noise": 0.46,      # sigma: weight of unit gaussian noise in an image
    "img_clarity": [0.8, 1.2],  # per-row factor on the concept weight: how clearly an image shows its concepts
    "txt_offset": 0.866,    # b: weight of m_txt in a caption embedding
    "txt_content": 0.50,    # weight of the (normalised) bag of words in a caption embedding
    "offset_cos": 0.16,     # cosine(m_img, m_txt): the floor of every image-caption cosine
    "parent_mix": 0.45,     # how much of its parent (animal, vehicle, artwork ...) an object or style vector holds
    "word_noise": 0.35,     # a known word = its concepts + this much of its own hash vector
    "unknown_word": 0.30,   # weight of an unknown word's hash vector
    "hash_nnz": 8,          # non-zeros of a word's hash vector (+-1/sqrt(nnz) at hashed positions)
}

# Words and phrases -> concept weights. Unknown words get only a hash vector.
_V: dict[str, dict[str, float]] = {}


def _words(spec: str, **weights: float) -> None:
    for w in spec.split("|"):
        _V[w] = {k.replace("_", " ") if k not in UNSAFE else k: v for k, v in weights.items()}


# objects
_words("cat|cats|kitten|kittens|kitty|tabby", cat=1.0)
_words("dog|dogs|puppy|puppies|doggy|labrador|terrier", dog=1.0)
_words("bird|birds|parrot|sparrow|owl|seagull", bird=1.0)
_words("horse|horses|pony|stallion", horse=1.0)
_words("cow|cows|cattle|calf", cow=1.0)
_words("car|cars|automobile|sedan", car=1.0)
_words("bicycle|bicycles|bike|bikes", bicycle=1.0)
_words("cycling", bicycle=0.8)
_words("boat|boats|sailboat|yacht|ship", boat=1.0)
_words("airplane|airplanes|plane|aircraft|jet|airliner", airplane=1.0)
_words("flower|flowers|rose|roses|tulip|tulips|bouquet", flower=1.0)
_words("tree|trees|oak", tree=1.0)
_words("palm", tree=0.7, beach=0.2)
_words("pizza|pizzas", pizza=1.0)
_words("cake|cakes|cupcake|cupcakes", cake=1.0)
_words("dessert", cake=0.5, food=0.6)
_words("cup|cups|mug|mugs", cup=1.0)
_words("coffee|tea", cup=0.7, food=0.2)
_words("chair|chairs|armchair|stool", chair=1.0)
_words("house|houses|cottage|cabin", house=1.0)
_words("home", house=0.7)
_words("door", house=0.5)
_words("wall", house=0.3, studio=0.2)
_words("book|books|novel", book=1.0)
_words("library", book=0.7, office=0.2)
_words("camera|cameras|dslr", camera=1.0)
_words("clock|clocks", clock=1.0)
_words("guitar|guitars", guitar=1.0)
_words("guitarist", guitar=0.7, person=0.5)
_words("shoe|shoes|sneaker|sneakers|boots|heels", shoe=1.0)
_words("dress|dresses|gown", dress=1.0)
_words("teddy bear|teddy", teddy_bear=1.0)
_words("plush", teddy_bear=0.6, toy=0.5)
_words("bear", animal=0.7, teddy_bear=0.2)
# parents (latent: never a ground-truth object, but words and prompts use them)
_words("animal|animals|mammal|mammals|creature", animal=1.0)
_words("pet|pets", animal=0.7, cat=0.25, dog=0.25)
_words("wildlife", animal=0.8, forest=0.3)
_words("insect|insects", animal=0.6)
_words("pig|pigs|goat|goats|sheep|elephant|elephants|lion|tiger", animal=0.75)
_words("vehicle|vehicles|transport|transportation", vehicle=1.0)
_words("plant|plants", plant=1.0)
_words("nature", plant=0.4, forest=0.4, mountain=0.3)
_words("food|meal|dish|dinner|lunch|breakfast", food=1.0)
_words("furniture", furniture=1.0)
_words("table|tables|sofa|couch", furniture=0.8)
_words("clothes|clothing|fashion|outfit", clothing=1.0)
_words("toy|toys|puppet|puppets", toy=1.0)
_words("play|playing", toy=0.4, child=0.3)
_words("thing|things|object|objects|item|items|lifeless", thing=0.8)
_words("tool|tools", thing=0.6)
_words("material|materials", thing=0.4)
# scenes
_words("beach|beaches|seaside|shore|surf", beach=1.0)
_words("ocean|sea", beach=0.7)
_words("sand|sandy", beach=0.6)
_words("city street|street|streets|downtown|urban", city_street=1.0)
_words("city", city_street=0.8)
_words("road", city_street=0.6)
_words("industry|industrial", city_street=0.4)
_words("forest|forests|woods|woodland|jungle", forest=1.0)
_words("wood", forest=0.5, tree=0.3)
_words("kitchen|kitchens", kitchen=1.0)
_words("cooking", kitchen=0.6, food=0.3)
_words("mountain|mountains|alps|peak", mountain=1.0)
_words("hiking", mountain=0.6)
_words("rock|rocks|stone|stones", mountain=0.5)
_words("snow|snowy|ski|skiing", snow=1.0)
_words("winter", snow=0.8)
_words("night|nighttime|moon", night=1.0)
_words("evening", night=0.6)
_words("dark|neon", night=0.5)
_words("office|offices|desk|workplace", office=1.0)
_words("meeting", office=0.6)
_words("business|computer", office=0.5)
_words("garden|gardens|backyard|lawn", garden=1.0)
_words("park", garden=0.8)
_words("grass", garden=0.6)
_words("ground", garden=0.3)
_words("studio|backdrop|white background", studio=1.0)
_words("isolated", studio=0.6)
_words("bedroom|bedrooms", bedroom=1.0)
_words("bed|beds", bedroom=0.8)
_words("pillow", bedroom=0.6)
# styles
_words("photo|photos|photograph|photographs|photography|picture|pictures|pic|snapshot", photo=1.0)
_words("image|images", photo=0.5)
_words("closeup|close", photo=0.5)
_words("documentary", photo=0.4, photographic=0.5)
_words("news|journalism", photographic=0.5, city_street=0.3, person=0.2)
_words("photographic|photorealistic", photographic=1.0)
_words("painting|paintings|painted|watercolor|watercolour|oil painting", painting=1.0)
_words("oil", painting=0.6)
_words("canvas", painting=0.6)
_words("artwork|artworks", artwork=1.0)
_words("art|artistic", artwork=0.8, painting=0.3)
_words("sketch|sketches|charcoal", sketch=1.0)
_words("drawing|drawings|drawn", sketch=0.8, artwork=0.4)
_words("pencil", sketch=0.7)
_words("illustration|illustrations", cartoon=0.8, artwork=0.6)
_words("cartoon|cartoons|comic|comics|clipart", cartoon=1.0)
_words("anime|manga", cartoon=0.95)
_words("3d render|render|rendering|rendered|cgi", **{"3d render": 1.0})
_words("3d|blender", **{"3d render": 0.8})
_words("vintage|retro|antique|sepia|1950s|1970s", vintage=1.0)
# watermarks and text
_words("watermark|watermarks|watermarked", watermark=1.0)
_words("stock", watermark=0.45, photo=0.3)
_words("stock photo|stock image", watermark=0.5, photo=0.6)
_words("shutterstock|istock|alamy|dreamstime|123rf|depositphotos|getty", watermark=0.6)
_words("royalty free", watermark=0.4)
_words("text|logo|logos|poster|posters|banner|sign|quote|quotes|typography|meme|memes|lettering|label|headline",
       text_overlay=1.0)
_words("ad|ads|advertisement|advertising|commercial", text_overlay=0.7)
_words("sale", text_overlay=0.4)
# people
_words("person|people|woman|women|man|men|lady|ladies|guy|human|humans|grownup|grownups|couple", person=1.0)
_words("model|models", person=0.7)
_words("portrait", person=0.7, photo=0.3)
_words("face|faces", person=0.6)
_words("selfie", person=0.7, photo=0.5)
_words("bride", person=0.7, dress=0.3)
_words("mother|father|parent|parents", person=0.7, child=0.2)
_words("family", person=0.6, child=0.3)
_words("talk show", person=0.5, studio=0.5)
_words("romance|love", person=0.3)
_words("adult|adults", person=0.55, unsafe_explicit=0.35)
_words("child|children|kid|kids|baby|babies|toddler|toddlers|infant|underaged|little girl|little boy|young child|young girl",
       child=1.0)
_words("boy|boys", child=0.6, person=0.3)
_words("girl|girls", child=0.5, person=0.4)
_words("teen|teens|teenager|teenagers", child=0.6, person=0.5)
_words("young", child=0.3)
# unsafe stand-ins (words only so that captions and the release prompt lists map; no content exists)
_words("porn|sex|sexual|nsfw|xxx|explicit|erotic|nude|naked|lust|horny|nipples|breasts|breats|tits|boops|"
       "penis|dick|cock|clitoris|vagina|fuck|sperm|areola|18+", unsafe_explicit=1.0)
_words("uncensored", unsafe_explicit=0.6)
_words("sexy", unsafe_explicit=0.7, person=0.3)
_words("hot", unsafe_explicit=0.35)
_words("lick|licking", unsafe_explicit=0.5)
_words("lingerie", unsafe_explicit=0.6, person=0.3, clothing=0.2)
_words("hentai", unsafe_explicit=1.0, cartoon=0.3)
_words("body", person=0.4, unsafe_explicit=0.2)
_words("skin", person=0.3, unsafe_explicit=0.3)
_words("gore|gory|blood|bloody|violence|violent|brutal|wound|wounds|injury|injuries|corpse|murder", unsafe_gore=1.0)
_words("dead", unsafe_gore=0.6)
_words("horror|zombie", unsafe_gore=0.5)
_words("monster", unsafe_gore=0.3)
_words("crime", unsafe_gore=0.3, night=0.2)
_words("thriller", unsafe_gore=0.2, night=0.2)
_words("weapon", unsafe_gore=0.4)
VOCABULARY: dict[str, dict[str, float]] = dict(sorted(_V.items()))
del _V
STOPWORDS = ("a", "an", "the", "of", "on", "in", "at", "with", "and", "or", "to", "for", "is", "are", "by", "from",
             "this", "that", "it", "its", "as", "be", "my", "your", "our", "their", "his", "her", "into", "near",
             "under", "over", "s")

# LAION-400M's 35 NSFW prompts (crawlingathome clip_filter.py, as in shared/data/prompts/): used to
# compute the synthetic world's NSFW column exactly as the release computed its own. The missing comma
# of the original ("insect" "fashion" -> "insectfashion") is kept, and so is the rule's off-by-one.
LAION400M_NSFW_PROMPTS = (
    "neutral", "selfie", "illustration, drawing", "toys, play, kids, children", "teddy bear, puppet",
    "animal, bird, mammal, insectfashion, clothes", "logo, commercial, ad, advertisement", "drawing, painting",
    "anime, cartoon", "comedy, fun", "romance, love story", "thriller, suspense, crime story",
    "action, action movie", "horror, monster movie", "documentary", "news, journalism", "entertainment",
    "talk show",
    "porn, sex, sperm, nipples, breats, tits, boops, penis, dick, cock, clitoris, vagina, fuck, lust, horny, "
    "sexual, lick, licking",
    "porn, sex, sperm, nipples", "porn, sex, sperm, penis, dick, cock", "nipples, breats, tits, boops, sexy",
    "penis, dick, cock", "clitoris, vagina", "sex, fuck, lust, horny, sexual, lick, licking", "porn, sex, sexy",
    "sexy, hot", "sperm, skin", "lust, horny, sexual", "lick, licking, body", "anime, hentai, sexy",
    "cartoon, sexy, sex", "hentai", "anime, sexy, breasts", "hentai",
)
NSFW_SAFE_BELOW = 19  # the release: UNLIKELY if both top-2 indices < 19, NSFW if both >= 19, else UNSURE

_TOKEN = re.compile(r"[a-z0-9]+\+?")


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). Row-wise only: independent of the batch."""
    n = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


# ------------------------------------------------------------------------------------------------
# The text encoder
# ------------------------------------------------------------------------------------------------
class DemoTextEncoder:
    """The synthetic world's text encoder: bag of words -> concept vectors (+ hash vectors) + m_txt.

    Deterministic and batch-independent: ``encode([t])[0]`` equals the row of ``t`` in any batch, and
    the ``text_emb`` of every row of the world is ``encode([caption])`` stored as float16.
    """

    def __init__(self, world: str | Path):
        world = Path(world)
        try:
            meta = json.loads((world / WORLD_JSON).read_text())
            concepts = np.load(world / CONCEPTS_NPY, allow_pickle=False)
            offsets = np.load(world / OFFSETS_NPY, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LayoutError(f"not a synthetic demo world (cannot read world/ files: {exc})", world) from None
        self._setup(meta, concepts, offsets)

    @classmethod
    def _from_arrays(cls, meta: dict, concepts: np.ndarray, offsets: np.ndarray) -> "DemoTextEncoder":
        self = cls.__new__(cls)
        self._setup(meta, concepts, offsets)
        return self

    def _setup(self, meta: dict, concepts: np.ndarray, offsets: np.ndarray) -> None:
        g = meta["geometry"]
        self.concept_names: list[str] = list(meta["concepts"])
        self.concepts = np.ascontiguousarray(concepts, dtype=np.float32)
        self.m_img = np.ascontiguousarray(offsets[0], dtype=np.float32)
        self.m_txt = np.ascontiguousarray(offsets[1], dtype=np.float32)
        self.dim: int = int(self.concepts.shape[1])
        self._offset = np.float32(g["txt_offset"])
        self._content = np.float32(g["txt_content"])
        self._known = float(g["word_noise"])
        self._unknown = float(g["unknown_word"])
        self._nnz = int(g["hash_nnz"])
        self._hash_seed = int(meta["hash_seed"])
        ci = {c: i for i, c in enumerate(self.concept_names)}
        self._vocab = {w: tuple((ci[c], float(v)) for c, v in sorted(m.items(), key=lambda kv: ci[kv[0]]))
                       for w, m in meta["vocabulary"].items()}
        self._phrases = {tuple(w.split(" ")) for w in self._vocab if " " in w}
        self._stop = frozenset(meta["stopwords"])
        self._token_cache: dict[str, tuple] = {}
        self._text_cache: dict[str, tuple] = {}

    # -- analysis: text -> (concept ids, weights, hashed positions, values) -----------------------
    def tokens(self, text: str) -> list[str]:
        """Lower-cased word tokens, two-word vocabulary phrases joined ("teddy bear"), stopwords dropped."""
        raw = _TOKEN.findall(text.lower())
        out, i = [], 0
        while i < len(raw):
            if i + 1 < len(raw) and (raw[i], raw[i + 1]) in self._phrases:
                out.append(raw[i] + " " + raw[i + 1])
                i += 2
                continue
            if raw[i] not in self._stop:
                out.append(raw[i])
            i += 1
        return out

    def _hash(self, word: str) -> tuple[list[int], list[float]]:
        v = mmh3.hash128(word, self._hash_seed, signed=False)
        pos, sign = [], []
        for j in range(self._nnz):
            chunk = (v >> (16 * j)) & 0xFFFF
            pos.append((chunk & 0x7FFF) % self.dim)
            sign.append(1.0 if chunk & 0x8000 else -1.0)
        return pos, sign

    def _token(self, tok: str) -> tuple:
        hit = self._token_cache.get(tok)
        if hit is None:
            concepts = self._vocab.get(tok)
            if concepts is None and len(tok) > 3 and tok.endswith("s"):
                concepts = self._vocab.get(tok[:-1])  # plurals: "toys" -> "toy"
            pos, sign = self._hash(tok)
            scale = (self._known if concepts else self._unknown) / math.sqrt(self._nnz)
            hit = (concepts or (), pos, [s * scale for s in sign])
            if len(self._token_cache) >= 100_000:
                self._token_cache.clear()
            self._token_cache[tok] = hit
        return hit

    def _analyse(self, text: str) -> tuple:
        hit = self._text_cache.get(text)
        if hit is None:
            coef: dict[int, float] = {}
            hp: list[int] = []
            hv: list[float] = []
            for tok in self.tokens(text):
                concepts, pos, vals = self._token(tok)
                for c, w in concepts:
                    coef[c] = coef.get(c, 0.0) + w
                hp.extend(pos)
                hv.extend(vals)
            ids = sorted(coef)
            hit = (ids, [coef[c] for c in ids], hp, hv)
            if len(self._text_cache) >= 20_000:
                self._text_cache.clear()
            self._text_cache[text] = hit
        return hit

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 unit rows. The same text gives the same row bits in any batch."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings")
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), 4096):
            out[start:start + 4096] = self._encode_batch(texts[start:start + 4096])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        n, d = len(texts), self.dim
        parts = [self._analyse("" if t is None else str(t)) for t in texts]
        k = max((len(p[0]) for p in parts), default=0)
        ids = np.zeros((n, max(k, 1)), dtype=np.int64)
        ws = np.zeros((n, max(k, 1)), dtype=np.float32)
        flat_i, flat_v = [], []
        for r, (ci, cw, hp, hv) in enumerate(parts):
            ids[r, :len(ci)] = ci
            ws[r, :len(cw)] = cw
            if hp:
                base = r * d
                flat_i.extend(base + p for p in hp)
                flat_v.extend(hv)
        content = np.zeros((n, d), dtype=np.float32)
        for j in range(k):  # a fixed per-row summation order: results do not depend on the batch
            content += ws[:, j, None] * self.concepts[ids[:, j]]
        if flat_i:
            np.add.at(content.reshape(-1), np.asarray(flat_i, dtype=np.int64), np.asarray(flat_v, dtype=np.float32))
        t = self._offset * self.m_txt[None, :] + self._content * _unit(content)
        return _unit(t)


# ------------------------------------------------------------------------------------------------
# Building the space
# ------------------------------------------------------------------------------------------------
def _orthonormal_rows(x: np.ndarray) -> np.ndarray:
    """Gram-Schmidt with elementwise numpy only (no BLAS/LAPACK): the same bits on every machine."""
    out = np.empty_like(x)
    for i in range(len(x)):
        v = x[i].copy()
        for _ in range(2):  # twice is enough (Kahan)
            for j in range(i):
                v -= (v * out[j]).sum() * out[j]
        out[i] = v / np.sqrt((v * v).sum())
    return out


def _make_space(seed: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Concept vectors (objects and styles mixed with their parent) and the two modality offsets.

    The base directions are orthonormal (no chance overlaps between concepts); the offsets are
    orthogonal to every concept, and cosine(m_img, m_txt) = offset_cos.
    """
    rng = np.random.default_rng([seed, 0x5EED, dim])
    basis = _orthonormal_rows(rng.standard_normal((len(CONCEPTS) + 2, dim)))
    raw, extra = basis[:len(CONCEPTS)], basis[len(CONCEPTS):]
    c = raw.copy()
    mix = GEOMETRY["parent_mix"]
    for obj, parent in list(OBJECTS.items()) + list(STYLE_PARENTS.items()):
        if parent is not None:
            v = raw[_CI[obj]] + mix * raw[_CI[parent]]
            c[_CI[obj]] = v / np.sqrt((v * v).sum())
    rho = GEOMETRY["offset_cos"]
    m_img, m_txt = extra[0], rho * extra[0] + math.sqrt(1 - rho * rho) * extra[1]
    return c.astype(np.float32), np.stack([m_img, m_txt]).astype(np.float32)


def _mix(w: np.ndarray, concepts: np.ndarray) -> np.ndarray:
    """``w @ concepts`` for sparse rows, summed in a fixed order without BLAS (same bits everywhere)."""
    nz = w != 0
    k = int(nz.sum(axis=1).max()) if len(w) else 0
    idx = np.argsort(~nz, axis=1, kind="stable")[:, :k]  # the non-zero columns first, in column order
    wk = np.take_along_axis(w, idx, axis=1)
    out = np.zeros((len(w), concepts.shape[1]), dtype=np.float32)
    for j in range(k):
        out += wk[:, j, None] * concepts[idx[:, j]]
    return out


def _world_meta(rows: int, seed: int, rows_per_shard: int, dim: int) -> dict:
    return {
        "what": "synthetic demo world: generated embeddings from a known concept space, not real images "
                "or a real CLIP model; every row's truth is in ground_truth/",
        "synthetic": True,
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "parameters": _parameters(rows, seed, rows_per_shard, dim),
        "model": MODEL_NAME,
        "dim": dim,
        "hash_seed": seed & 0xFFFFFFFF,
        "geometry": GEOMETRY,
        "concepts": list(CONCEPTS),
        "concept_kinds": {"objects": list(OBJECT_NAMES), "scenes": list(SCENES), "styles": list(STYLES),
                          "marks": list(MARKS), "people": list(PEOPLE), "unsafe": list(UNSAFE),
                          "parents": list(PARENTS)},
        "parents": {k: v for k, v in list(OBJECTS.items()) + list(STYLE_PARENTS.items()) if v},
        "vocabulary": VOCABULARY,
        "stopwords": list(STOPWORDS),
        "nsfw_prompts": list(LAION400M_NSFW_PROMPTS),
        "files": {"concepts": CONCEPTS_NPY, "offsets": OFFSETS_NPY + " (row 0: m_img, row 1: m_txt)",
                  "ground_truth": TRUTH_DIR + "/truth_<shard>.parquet"},
    }


def _parameters(rows: int, seed: int, rows_per_shard: int, dim: int) -> dict:
    return {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "synthetic": True,
            "rows": rows, "seed": seed, "rows_per_shard": rows_per_shard, "dim": dim, "block_rows": BLOCK_ROWS}


# ------------------------------------------------------------------------------------------------
# Captions
# ------------------------------------------------------------------------------------------------
_NOUNS = {
    "cat": ["cat", "kitten", "tabby cat", "kitty"], "dog": ["dog", "puppy", "black dog", "labrador"],
    "bird": ["bird", "parrot", "small bird", "owl"], "horse": ["horse", "pony", "brown horse"],
    "cow": ["cow", "cows", "calf"], "car": ["car", "red car", "sports car", "vintage car"],
    "bicycle": ["bicycle", "bike", "road bike"], "boat": ["boat", "sailboat", "fishing boat", "yacht"],
    "airplane": ["airplane", "plane", "jet"], "flower": ["flower", "roses", "tulips", "bouquet of flowers"],
    "tree": ["tree", "oak tree", "trees"], "pizza": ["pizza", "pepperoni pizza", "homemade pizza"],
    "cake": ["cake", "birthday cake", "cupcake", "chocolate cake"], "cup": ["cup", "coffee mug", "cup of tea"],
    "chair": ["chair", "wooden chair", "armchair"], "house": ["house", "cottage", "old house"],
    "book": ["book", "books", "open book"], "camera": ["camera", "vintage camera", "dslr camera"],
    "clock": ["clock", "wall clock", "alarm clock"], "guitar": ["guitar", "acoustic guitar", "electric guitar"],
    "shoe": ["shoes", "sneakers", "leather boots"], "dress": ["dress", "red dress", "wedding dress"],
    "teddy bear": ["teddy bear", "teddy", "plush teddy bear"],
}
_SCENE_AT = {
    "beach": ["on the beach", "at the beach", "by the sea"],
    "city street": ["on a city street", "in the city", "on the street", "downtown"],
    "forest": ["in the forest", "in the woods"], "kitchen": ["in the kitchen", "in a kitchen"],
    "mountain": ["in the mountains", "on a mountain", "in the alps"], "snow": ["in the snow", "in winter snow"],
    "night": ["at night", "at nighttime"], "office": ["in the office", "on an office desk"],
    "garden": ["in the garden", "in the park", "on the lawn"],
    "studio": ["on a white background", "in the studio", "isolated on white background"],
    "bedroom": ["in the bedroom", "on the bed"],
}
_SCENE_NOUN = {
    "beach": ["the beach", "a sandy beach", "the seaside"], "city street": ["a city street", "the city", "a busy street"],
    "forest": ["the forest", "a forest path", "the woods"], "kitchen": ["a kitchen", "a modern kitchen"],
    "mountain": ["the mountains", "a mountain peak", "the alps"], "snow": ["snow", "a snowy field", "winter snow"],
    "night": ["the night", "a starry night"], "office": ["an office", "the office desk"],
    "garden": ["a garden", "the park", "a backyard garden"], "studio": ["a studio", "a white background"],
    "bedroom": ["a bedroom", "a cozy bedroom"],
}
_STYLE_PRE = {
    "photo": ["a photo of", "photo of", "a close-up photo of", "a picture of", "", "", "", ""],
    "painting": ["a painting of", "oil painting of", "watercolor painting of", "an artwork of"],
    "sketch": ["a pencil sketch of", "a drawing of", "sketch of", "charcoal drawing of"],
    "cartoon": ["a cartoon of", "cartoon illustration of", "anime drawing of", "clipart of"],
    "3d render": ["a 3d render of", "3d model of", "cgi render of"],
    "vintage": ["a vintage photo of", "retro picture of", "an antique photograph of"],
}
_STYLE_WORD = {"photo": "photo", "painting": "painting", "sketch": "sketch", "cartoon": "cartoon",
               "3d render": "3d render", "vintage": "vintage photo"}
_PARENT_WORD = {"animal": "an animal", "vehicle": "a vehicle", "plant": "a plant", "food": "some food",
                "furniture": "furniture", "clothing": "clothes", "toy": "a toy", "thing": "a thing"}
_ADJ = ["cute", "beautiful", "small", "big", "white", "black", "happy", "funny", "lovely", "amazing"]
_SUFFIX = [" | free download", " - image", " wallpaper", " #travel", ", high quality", " for sale", " (2019)",
           " - Pinterest", " 4k", " hd", " #instagood", " on Etsy"]
_PERSON = ["woman", "man", "person", "couple", "people", "lady"]
_JUNK_SHORT = ["", "1", "-", "...", "img", "jpg", "pic", "foto", "a"]
_QUOTES = ["keep calm", "good vibes only", "hello summer", "live laugh love", "best day ever"]


def _art(noun: str) -> str:
    if noun.endswith("s") and not noun.endswith("ss") and noun not in ("bus",):
        return noun  # plurals and mass nouns go bare
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _bare(noun: str) -> str:
    for article in ("a ", "an ", "the "):
        if noun.startswith(article):
            return noun[len(article):]
    return noun


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p).strip()


class _Captioner:
    """Template captions for one block. All randomness comes from one seeded `random.Random`."""

    def __init__(self, r: random.Random):
        self.r = r

    def subject(self, a: dict, i: int) -> str:
        r = self.r
        o1, o2 = a["obj1"][i], a["obj2"][i]
        subj = a["subj"][i]
        if subj == 1:  # person
            who = r.choice(_PERSON)
            s = _art(who) if who not in ("people",) else who
            if o1 >= 0:
                s += " with " + _art(r.choice(_NOUNS[OBJECT_NAMES[o1]]))
            return s
        if subj == 2:  # child
            who = r.choice(["a child", "a little girl", "a little boy", "kids", "a baby", "children", "a toddler"])
            if a["person"][i]:
                who = r.choice(["mother and child", "a family with kids", "father and baby"])
            if o1 >= 0:
                who += " with " + _art(r.choice(_NOUNS[OBJECT_NAMES[o1]]))
            return who
        if o1 < 0:
            return ""
        noun = r.choice(_NOUNS[OBJECT_NAMES[o1]])
        if r.random() < 0.2:
            noun = r.choice(_ADJ) + " " + noun
        s = _art(noun)
        if o2 >= 0:
            s += " and " + _art(r.choice(_NOUNS[OBJECT_NAMES[o2]]))
        return s

    def matched(self, a: dict, i: int) -> str:
        r = self.r
        scene, style = SCENES[a["scene"][i]], STYLES[a["style"][i]]
        subj = self.subject(a, i)
        at = r.choice(_SCENE_AT[scene]) if r.random() < 0.8 else ""
        if a["txt"][i] and r.random() < 0.7:
            thing = subj or r.choice(_SCENE_NOUN[scene])
            return r.choice([f"{thing} poster with text", f'quote "{r.choice(_QUOTES)}" with {thing}',
                             f"{thing} logo", f"funny meme, {thing}", f"sale banner with {thing}",
                             f"{thing} sign {at}".strip()])
        if a["stock"][i]:
            thing = _join(subj, at) if subj else r.choice(_SCENE_NOUN[scene])
            if scene == "studio" and subj and r.random() < 0.5:
                return f"{subj} isolated on white background"
            if not a["wm"][i] and r.random() < 0.1:
                return f"free {thing} photo, no watermark"
            return r.choice([f"Stock Photo - {thing}", f"{thing} stock photo", f"Royalty free image of {thing}",
                             f"{thing} - stock image", f"{thing}. Stock photo #{r.randrange(10**6, 10**7)}",
                             f"{thing} - 123RF"])
        if not subj:  # a scene without a subject
            noun = r.choice(_SCENE_NOUN[scene])
            pre = r.choice(_STYLE_PRE[style])
            return r.choice([_join(pre, noun), f"beautiful view of {noun}", f"{_bare(noun)} landscape", _join(pre, noun)])
        if a["obj1"][i] == _CI["cup"] and a["subj"][i] == 0 and r.random() < 0.15:
            return _join("hot coffee in", subj, at)  # a 'hot ' keyword on a safe row
        if a["subj"][i] == 0 and OBJECTS[OBJECT_NAMES[a["obj1"][i]]] == "animal" and r.random() < 0.04:
            return _join("adult", OBJECT_NAMES[a["obj1"][i]], at)  # 'adult' on a safe row
        if a["obj1"][i] == _CI["shoe"] and r.random() < 0.2:
            return _join("baby shoes", at)  # 'baby' without a child
        pre = r.choice(_STYLE_PRE[style])
        form = r.random()
        if form < 0.55:
            cap = _join(pre, subj, at)
        elif form < 0.7:
            cap = _join(subj, at) + (f", {_STYLE_WORD[style]}" if style != "photo" else "")
        elif form < 0.85:
            cap = _join(pre, subj)
        else:
            cap = _join(subj, at, "-", _STYLE_WORD[style])
        if scene == "beach" and r.random() < 0.05:
            cap = "hot summer day: " + cap
        return cap

    def partial(self, a: dict, i: int) -> str:
        r = self.r
        scene, style = SCENES[a["scene"][i]], STYLES[a["style"][i]]
        subj = self.subject(a, i)
        choice = r.random()
        if subj and choice < 0.35:  # right subject, wrong scene
            other = r.choice([s for s in SCENES if s != scene])
            return _join(r.choice(_STYLE_PRE[style]), subj, r.choice(_SCENE_AT[other]))
        if choice < 0.65:  # only the scene or the style
            return r.choice([f"beautiful {_bare(r.choice(_SCENE_NOUN[scene]))}", f"vacation {r.choice(_SCENE_AT[scene])}",
                             f"my {_STYLE_WORD[style]}", f"{_STYLE_WORD[style]} {r.randrange(1, 500)}",
                             f"{r.choice(_SCENE_NOUN[scene])}, summer {r.randrange(2005, 2023)}"])
        o1 = a["obj1"][i]
        if o1 >= 0 and OBJECTS[OBJECT_NAMES[o1]] and choice < 0.85:  # a vaguer word
            return _join(_PARENT_WORD[OBJECTS[OBJECT_NAMES[o1]]], r.choice(_SCENE_AT[scene]))
        if a["obj2"][i] >= 0:  # the second object only
            return _art(r.choice(_NOUNS[OBJECT_NAMES[a["obj2"][i]]]))
        return r.choice(["best price", "new arrivals", "click to enlarge", "my favourite", "summer collection",
                         "welcome to our website", "gift ideas"]) + (f" - {subj}" if subj and r.random() < 0.5 else "")

    def unsafe(self, a: dict, i: int, keyword: bool) -> str:
        r = self.r
        at = r.choice(_SCENE_AT[SCENES[a["scene"][i]]])
        who = r.choice(["woman", "model", "man", "couple"])
        sw = _STYLE_WORD[STYLES[a["style"][i]]]
        if a["unsafe"][i] == 1:
            if keyword:
                return r.choice([f"sexy model {at}", f"hot model posing {at}", f"adult content - {who} {at}",
                                 f"xxx {who} {at}", f"nsfw {sw} of a {who}", f"explicit adult {sw} {at}",
                                 f"hot sexy {who} {at}", f"18+ uncensored {sw}", f"nude {who} {at}",
                                 f"{who} in lingerie {at}"])
            return r.choice([f"{who} {at}", f"model posing {at}", f"portrait of a {who} {at}", f"beautiful {who}",
                             f"glamour {sw} {at}", f"{sw} {r.randrange(1000, 9999)}"])
        if keyword:
            return r.choice([f"horror movie scene {at}", f"bloody scene {at}", "gore special effects makeup",
                             f"violent crime scene {at}", "zombie halloween makeup with blood",
                             f"graphic injury {sw}"])
        return r.choice([f"movie still {at}", "halloween party", f"scene {at}", f"{sw} of a {who} {at}"])

    def junk(self) -> str:
        r = self.r
        if r.random() < 0.4:
            return r.choice(_JUNK_SHORT)
        return r.choice([f"IMG_{r.randrange(10000):04d}", f"DSC{r.randrange(100000):05d}.JPG",
                         f"P10{r.randrange(100000):05d}.jpg", f"DSCN{r.randrange(10000):04d}", "untitled",
                         "unnamed", "image", "thumbnail", f"{r.getrandbits(32):08x}", "no title",
                         f"file_{r.randrange(10**6):06d}", f"image{r.randrange(1000)}"])

    def html(self, cap: str) -> str:
        r = self.r
        return r.choice([f"<b>{cap}</b>", f"<script>alert(1)</script> {cap}", f"{cap} &amp; more",
                         f'<a href="https://synthetic.invalid/">{cap}</a>', f"<img src=x onerror=alert(1)>{cap}",
                         f"{cap}<br/>", f"&lt;i&gt;{cap}&lt;/i&gt;", f"<i>{cap}</i> &quot;new&quot;"])

    def decorate(self, cap: str) -> str:
        r = self.r
        if r.random() < 0.15:
            cap += r.choice(_SUFFIX)
        if r.random() < 0.12:
            cap = cap.title()
        return cap


def _slug(text: str) -> str:
    return "-".join(_TOKEN.findall(text.lower())[:6])


# ------------------------------------------------------------------------------------------------
# One block of rows
# ------------------------------------------------------------------------------------------------
_ATTRS = ("unsafe", "subj", "obj1", "obj2", "scene", "style", "wm", "wm_s", "txt", "txt_s", "person", "child",
          "unsafe_s", "stock", "obj_w", "scene_w", "clarity", "z_unsafe", "z_wm", "width", "height")
_PERSON_OBJECTS = [_CI[o] for o in ("guitar", "camera", "bicycle", "dress", "book", "shoe", "cup", "horse", "dog",
                                    "car")]
_CHILD_OBJECTS = [_CI[o] for o in ("teddy bear", "cake", "dog", "cat", "book", "bicycle", "flower")]
_SCENE_AFFINITY = {
    "boat": ["beach"], "airplane": ["city street", "mountain"], "car": ["city street"], "cow": ["garden", "mountain"],
    "horse": ["garden", "mountain", "forest"], "pizza": ["kitchen"], "cake": ["kitchen"], "cup": ["kitchen", "office"],
    "chair": ["office", "bedroom", "studio"], "book": ["office", "bedroom"], "tree": ["forest", "garden", "snow"],
    "flower": ["garden", "studio"], "shoe": ["studio"], "dress": ["studio"], "camera": ["studio"],
    "teddy bear": ["bedroom"], "clock": ["office", "studio"], "guitar": ["studio", "bedroom"],
}
_STYLE_P = {  # safe / explicit stand-in / gore stand-in
    0: [0.62, 0.08, 0.06, 0.08, 0.06, 0.10], 1: [0.75, 0.05, 0.0, 0.15, 0.05, 0.0],
    2: [0.55, 0.10, 0.0, 0.15, 0.15, 0.05],
}
_RATES = {"explicit": 0.023, "gore": 0.009, "person": 0.13, "child": 0.045, "scene_only": 0.125,
          "watermark": 0.052, "text_overlay": 0.04, "stock_wm": 0.6, "stock_other": 0.04,
          "junk": 0.04, "mismatched": 0.10, "partial": 0.12, "html": 0.006,
          "copies": 0.025, "exact_share": 0.2, "carry_share": 0.35}


def _choice_idx(rng: np.random.Generator, n: int, p: list[float]) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int16)


def _attributes(rng: np.random.Generator, n: int) -> dict:
    """What each image shows (the truth), drawn independently per row."""
    u = rng.random(n)
    unsafe = np.zeros(n, np.int8)
    unsafe[u < _RATES["explicit"]] = 1
    unsafe[(u >= _RATES["explicit"]) & (u < _RATES["explicit"] + _RATES["gore"])] = 2
    safe = unsafe == 0
    v = rng.random(n)
    subj = np.zeros(n, np.int8)  # 0 object, 1 person, 2 child, 3 scene only
    cut1 = _RATES["person"]
    cut2 = cut1 + _RATES["child"]
    cut3 = cut2 + _RATES["scene_only"]
    subj[(v < cut1)] = 1
    subj[(v >= cut1) & (v < cut2)] = 2
    subj[(v >= cut2) & (v < cut3)] = 3
    subj[unsafe == 1] = 1
    subj[unsafe == 2] = np.where(rng.random(int((unsafe == 2).sum())) < 0.6, 1, 3)
    obj_p = np.ones(len(OBJECT_NAMES))
    obj_p[[_CI["cat"], _CI["dog"]]] = 1.6
    obj1 = _choice_idx(rng, n, list(obj_p))
    obj2 = _choice_idx(rng, n, list(obj_p))
    obj2[(obj2 == obj1) | (rng.random(n) >= 0.12) | (subj != 0)] = -1
    person_obj = np.asarray(_PERSON_OBJECTS, np.int16)[rng.integers(0, len(_PERSON_OBJECTS), n)]
    child_obj = np.asarray(_CHILD_OBJECTS, np.int16)[rng.integers(0, len(_CHILD_OBJECTS), n)]
    w = rng.random(n)
    obj1 = np.where(subj == 1, np.where(w < 0.4, person_obj, -1), obj1)
    obj1 = np.where(subj == 2, np.where(w < 0.5, child_obj, -1), obj1)
    obj1[(subj == 3) | (unsafe != 0)] = -1
    person = (subj == 1) | ((subj == 2) & (rng.random(n) < 0.2))
    child = subj == 2
    # scenes: uniform, with object affinities; the stand-ins have their own
    scene = rng.integers(0, len(SCENES), n).astype(np.int8)
    aff = rng.random(n) < 0.5
    pick = rng.random(n)
    for obj, scenes in _SCENE_AFFINITY.items():
        m = aff & (obj1 == _CI[obj]) & (subj == 0)
        if m.any():
            idx = np.minimum((pick[m] * len(scenes)).astype(int), len(scenes) - 1)
            scene[m] = [SCENES.index(scenes[j]) for j in idx]
    sc = {s: i for i, s in enumerate(SCENES)}
    landscape = (subj == 3) & (scene == sc["studio"])  # a scene without a subject is never a studio backdrop
    scene[landscape] = sc["mountain"]
    ex = unsafe == 1
    scene[ex] = np.asarray([sc["bedroom"], sc["studio"], sc["beach"], sc["night"], sc["garden"]],
                           np.int8)[_choice_idx(rng, int(ex.sum()), [0.45, 0.25, 0.15, 0.08, 0.07])]
    gr = unsafe == 2
    scene[gr] = np.asarray([sc["night"], sc["city street"], sc["forest"], sc["kitchen"], sc["bedroom"]],
                           np.int8)[_choice_idx(rng, int(gr.sum()), [0.35, 0.25, 0.2, 0.1, 0.1])]
    style = np.empty(n, np.int8)
    for k, p in _STYLE_P.items():
        m = unsafe == k
        style[m] = _choice_idx(rng, int(m.sum()), p)
    wm = rng.random(n) < np.where(safe, _RATES["watermark"], 0.08)
    txt = rng.random(n) < _RATES["text_overlay"]
    stock = rng.random(n) < np.where(wm, _RATES["stock_wm"], _RATES["stock_other"])
    stock &= safe & (subj != 2)
    strong = rng.random(n) < 0.85
    unsafe_s = np.where(strong, rng.uniform(0.7, 1.3, n), rng.uniform(0.25, 0.55, n)).astype(np.float32)
    unsafe_s[safe] = 0
    # LAION-like sizes: log-normal width, common aspect ratios
    width = np.exp(rng.normal(math.log(520), 0.6, n))
    aspect = np.asarray([1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16, 2.5, 1 / 3])[
        _choice_idx(rng, n, [0.25, 0.2, 0.12, 0.15, 0.1, 0.1, 0.04, 0.02, 0.02])]
    width = np.clip(np.round(width), 16, 8000).astype(np.int64)
    height = np.clip(np.round(width / aspect), 16, 8000).astype(np.int64)
    return {
        "unsafe": unsafe, "subj": subj, "obj1": obj1.astype(np.int16), "obj2": obj2.astype(np.int16),
        "scene": scene, "style": style, "wm": wm, "wm_s": rng.uniform(0.45, 0.9, n).astype(np.float32),
        "txt": txt, "txt_s": rng.uniform(0.3, 0.8, n).astype(np.float32), "person": person, "child": child,
        "unsafe_s": unsafe_s, "stock": stock, "obj_w": rng.uniform(0.85, 1.15, n).astype(np.float32),
        "scene_w": rng.uniform(0.7, 1.3, n).astype(np.float32),
        "clarity": rng.uniform(*GEOMETRY["img_clarity"], n).astype(np.float32),
        "z_unsafe": rng.standard_normal(n).astype(np.float32), "z_wm": rng.standard_normal(n).astype(np.float32),
        "width": width, "height": height,
    }


def _concept_weights(a: dict) -> np.ndarray:
    """(n, n_concepts) weights of the concepts each image shows."""
    n = len(a["unsafe"])
    w = np.zeros((n, len(CONCEPTS)), np.float32)
    r = np.arange(n)
    has1 = a["obj1"] >= 0
    w[r[has1], a["obj1"][has1]] = np.where(a["subj"][has1] == 0, 1.0, 0.6) * a["obj_w"][has1]
    has2 = a["obj2"] >= 0
    w[r[has2], a["obj2"][has2]] = 0.6
    scene_only = (a["subj"] == 3) & (a["unsafe"] == 0)
    w[r, len(OBJECT_NAMES) + a["scene"]] = np.where(scene_only, 1.0, 0.55) * a["scene_w"]
    w[r, len(OBJECT_NAMES) + len(SCENES) + a["style"]] = np.where(a["style"] == 0, 0.4, 0.75)
    w[:, _CI["watermark"]] = np.where(a["wm"], a["wm_s"], 0)
    w[:, _CI["text overlay"]] = np.where(a["txt"], a["txt_s"], 0)
    w[:, _CI["person"]] = np.where(a["person"], np.where(a["subj"] == 1, 0.95, 0.5), 0)
    w[:, _CI["child"]] = np.where(a["child"], 0.95, 0)
    w[:, _CI["unsafe_explicit"]] = np.where(a["unsafe"] == 1, a["unsafe_s"], 0)
    w[:, _CI["unsafe_gore"]] = np.where(a["unsafe"] == 2, a["unsafe_s"], 0)
    return w


def _scores(a: dict) -> tuple[np.ndarray, np.ndarray]:
    """Stand-ins for LAION's detectors: punsafe (CLIP-based NSFW head) and pwatermark (pixel classifier)."""
    sc = {s: i for i, s in enumerate(SCENES)}
    person = a["person"].astype(np.float32)
    # confounders: people at the beach or in a bedroom, painted figures
    conf = person * (2.0 + 2.0 * (a["scene"] == sc["beach"]) + 1.5 * (a["scene"] == sc["bedroom"])
                     + 1.0 * (a["style"] == STYLES.index("painting")))
    logit_u = -6.5 + 8.5 * a["unsafe_s"] + conf + 1.5 * a["z_unsafe"]
    # confounders: text overlays and logos look like watermarks to a pixel classifier
    logit_w = -5.5 + 14.0 * np.where(a["wm"], a["wm_s"], 0) + 8.0 * np.where(a["txt"], a["txt_s"], 0) + a["z_wm"]
    sig = lambda z: (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)  # noqa: E731
    return sig(logit_u), sig(logit_w)


class _Builder:
    def __init__(self, rows: int, seed: int, dim: int):
        self.rows, self.seed, self.dim = rows, seed, dim
        self.concepts, self.offsets = _make_space(seed, dim)
        self.encoder = DemoTextEncoder._from_arrays(_world_meta(rows, seed, 0, dim), self.concepts, self.offsets)
        self.prompts = self.encoder.encode(list(LAION400M_NSFW_PROMPTS))
        self.carry: list[dict] = []  # duplicate sources picked in the previous block, copied into this one
        self.n_blocks = -(-rows // BLOCK_ROWS)

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray, pa.Table, pa.Table]:
        start = b * BLOCK_ROWS
        n = min(BLOCK_ROWS, self.rows - start)
        rng = np.random.default_rng([self.seed, 0xB10C, b])
        r = random.Random(int(rng.integers(0, 2**63)))
        a = _attributes(rng, n)
        rowid = np.arange(start, start + n, dtype=np.int64)
        g = GEOMETRY

        # -- duplicates: which rows are copies, and of what ----------------------------------------
        dup_group = np.full(n, -1, np.int64)
        dup_of = np.full(n, -1, np.int64)
        exact = np.zeros(n, bool)
        carry_in, self.carry = self.carry, []
        in_share = 1.0 if b == 0 else 1 - _RATES["carry_share"]  # block 0 has no copies carried in
        n_in = int(rng.binomial(n, _RATES["copies"] * in_share))
        n_copy = min(n - 1, n_in + len(carry_in)) if n > 1 else 0
        pos = np.sort(rng.choice(n, size=n_copy, replace=False)) if n_copy else np.zeros(0, np.int64)
        carry_pos = set(rng.choice(pos, size=min(len(carry_in), len(pos)), replace=False).tolist()) if len(pos) else set()
        is_copy = np.zeros(n, bool)
        is_copy[pos] = True
        originals = np.flatnonzero(~is_copy)
        copies: list[tuple[int, object]] = []  # (position, source position in block | carried record)
        ci = iter(carry_in)
        sources_here: list[int] = []
        for p in pos.tolist():
            if p in carry_pos:
                copies.append((p, next(ci)))
                continue
            k = int(np.searchsorted(originals, p))
            if k == 0:
                is_copy[p] = False  # nothing earlier to copy: stays an original
                continue
            earlier = [s for s in sources_here if s < p]
            src = r.choice(earlier) if earlier and r.random() < 0.2 else int(originals[r.randrange(k)])
            sources_here.append(src)
            copies.append((p, src))
        for p, src in copies:
            exact[p] = r.random() < _RATES["exact_share"]
            if isinstance(src, dict):
                for name in _ATTRS:
                    a[name][p] = src["attrs"][name]
                dup_group[p] = dup_of[p] = src["row"]
            else:
                for name in _ATTRS:
                    a[name][p] = a[name][src]
                dup_group[p] = dup_of[p] = rowid[src]
                dup_group[src] = rowid[src]
            if not exact[p]:  # a re-encoded, resized copy of the same picture
                scale = r.uniform(0.5, 1.5)
                a["width"][p] = max(16, round(a["width"][p] * scale))
                a["height"][p] = max(16, round(a["height"][p] * scale))
                a["z_unsafe"][p] += np.float32(r.gauss(0, 0.1))
                a["z_wm"][p] += np.float32(r.gauss(0, 0.1))

        # -- images ----------------------------------------------------------------------------------
        img = rng.standard_normal((n, self.dim), dtype=np.float32)  # noise, then the rest added in place
        img *= np.float32(g["img_noise"] / math.sqrt(self.dim))
        content = _unit(_mix(_concept_weights(a), self.concepts))
        content *= (np.float32(g["img_content"]) * a["clarity"])[:, None]
        img += content
        del content
        img += np.float32(g["img_offset"]) * self.offsets[0]
        img16 = _unit(img).astype(np.float16)
        del img
        jitter = rng.standard_normal((max(len(copies), 1), self.dim), dtype=np.float32) / np.float32(math.sqrt(self.dim))
        for j, (p, src) in enumerate(copies):
            base = src["img16"] if isinstance(src, dict) else img16[src]
            if exact[p]:
                img16[p] = base
            else:
                eta = np.float32(r.uniform(0.08, 0.25))
                img16[p] = _unit(base.astype(np.float32) + eta * jitter[j]).astype(np.float16)

        # -- captions and urls -----------------------------------------------------------------------
        cap = _Captioner(r)
        matched = [cap.matched(a, i) for i in range(n)]
        captions, kinds, html = [], [], np.zeros(n, bool)
        keyword = np.zeros(n, bool)
        for i in range(n):
            u = r.random()
            if u < _RATES["junk"]:
                c, kind = cap.junk(), "junk"
            elif u < _RATES["junk"] + _RATES["mismatched"]:
                mine = (a["subj"][i], a["obj1"][i], a["unsafe"][i])
                others = (r.randrange(n) for _ in range(8))  # an unrelated row's caption
                j = next((j for j in others if (a["subj"][j], a["obj1"][j], a["unsafe"][j]) != mine), None)
                c, kind = (cap.junk(), "junk") if j is None else (matched[j], "mismatched")
            elif a["unsafe"][i]:
                keyword[i] = r.random() < 0.55
                c = cap.unsafe(a, i, keyword[i])
                kind = "matched" if keyword[i] else "partial"
            elif u < _RATES["junk"] + _RATES["mismatched"] + _RATES["partial"]:
                c, kind = cap.partial(a, i), "partial"
            else:
                c, kind = matched[i], "matched"
            if kind != "junk":
                c = cap.decorate(c)
                if r.random() < _RATES["html"]:
                    c, html[i] = cap.html(c), True
            captions.append(c)
            kinds.append(kind)
        keys = [f"{x // 10_000:05d}{x % 10_000:04d}" for x in rowid.tolist()]
        urls = []
        for i in range(n):
            if keyword[i] and a["unsafe"][i] == 1 and r.random() < 0.6:
                site = r.choice(["adult", "xxx"])
            elif a["stock"][i]:
                site = r.choice(["stock", "stockphotos"])
            else:
                site = r.choice(["img", "photos", "blog", "cdn", "shop", "forum", "news", "media"])
            if dup_of[i] >= 0:
                site = "mirror"
            ext = r.choice(["jpg", "jpg", "jpg", "jpg", "png", "webp"])
            slug = _slug(captions[i]) if r.random() < 0.3 and kinds[i] != "junk" else ""
            urls.append(f"https://synthetic.invalid/{site}/{slug + '-' if slug else ''}{keys[i]}.{ext}")
        for p, src in copies:
            if exact[p]:  # the same url and caption: what LAION-400M's exact dedup removes
                if isinstance(src, dict):
                    urls[p], captions[p], kinds[p], html[p] = src["url"], src["caption"], src["kind"], src["html"]
                else:
                    urls[p], captions[p], kinds[p], html[p] = urls[src], captions[src], kinds[src], html[src]

        # -- text embeddings (one encode per distinct caption), similarity, tags, scores ---------------
        uniq: dict[str, int] = {}
        inv = np.fromiter((uniq.setdefault(c, len(uniq)) for c in captions), np.int64, n)
        txt16 = self.encoder.encode(list(uniq))[inv].astype(np.float16)
        x, t = img16.astype(np.float32), txt16.astype(np.float32)
        sim = ((x * t).sum(axis=1) / (np.sqrt((x * x).sum(axis=1)) * np.sqrt((t * t).sum(axis=1)))).astype(np.float64)
        logits = 100.0 * (_unit(x) @ self.prompts.T)
        top2 = np.argsort(-logits, axis=1, kind="stable")[:, :2]
        lo = (top2 < NSFW_SAFE_BELOW).sum(axis=1)
        nsfw = np.where(lo == 2, "UNLIKELY", np.where(lo == 0, "NSFW", "UNSURE"))
        punsafe, pwatermark = _scores(a)
        hashes = np.fromiter((mmh3.hash64(u + c)[0] for u, c in zip(urls, captions)), np.int64, n)
        meta = pa.table({
            "url": pa.array(urls, pa.string()),
            "caption": pa.array(captions, pa.string()),
            "key": pa.array(keys, pa.string()),
            "similarity": pa.array(sim, pa.float64()),
            "punsafe": pa.array(punsafe, pa.float32()),
            "pwatermark": pa.array(pwatermark, pa.float32()),
            "NSFW": pa.array(nsfw.tolist(), pa.string()),
            "width": pa.array(a["width"], pa.int64()),
            "height": pa.array(a["height"], pa.int64()),
            "hash": pa.array(hashes, pa.int64()),
        })

        # -- duplicate sources for the next block (marked now, copied there: duplicates cross shards) ---
        if b + 1 < self.n_blocks:
            n_next = min(BLOCK_ROWS, self.rows - start - n)
            k = min(int(rng.binomial(n_next, _RATES["copies"] * _RATES["carry_share"])), n_next - 1)
            cands = np.flatnonzero(dup_of < 0)
            for src in rng.choice(cands, size=min(k, len(cands)), replace=False).tolist():
                dup_group[src] = rowid[src]
                self.carry.append({"row": int(rowid[src]), "attrs": {nm: a[nm][src] for nm in _ATTRS},
                                   "img16": img16[src].copy(), "url": urls[src], "caption": captions[src],
                                   "kind": kinds[src], "html": bool(html[src])})
        return img16, txt16, meta, self._truth(a, rowid, kinds, html, dup_group, dup_of, exact)

    @staticmethod
    def _truth(a, rowid, kinds, html, dup_group, dup_of, exact) -> pa.Table:
        n = len(rowid)
        w = _concept_weights(a)
        objs, concepts = [], []
        names = np.asarray(CONCEPTS, dtype=object)
        n_real = len(CONCEPTS) - len(PARENTS)
        for i in range(n):
            o = [OBJECT_NAMES[k] for k in (a["obj1"][i], a["obj2"][i]) if k >= 0]
            objs.append(o)
            concepts.append(names[:n_real][w[i, :n_real] > 0].tolist())
        unsafe_kind = np.asarray([None, "explicit", "gore"], dtype=object)[a["unsafe"]]
        return pa.table({
            "row": pa.array(rowid, pa.int64()),
            "objects": pa.array(objs, pa.list_(pa.string())),
            "scene": pa.array(np.asarray(SCENES, dtype=object)[a["scene"]].tolist(), pa.string()),
            "style": pa.array(np.asarray(STYLES, dtype=object)[a["style"]].tolist(), pa.string()),
            "concepts": pa.array(concepts, pa.list_(pa.string())),
            "is_unsafe": pa.array(a["unsafe"] > 0, pa.bool_()),
            "unsafe_kind": pa.array(unsafe_kind.tolist(), pa.string()),
            "unsafe_strength": pa.array(a["unsafe_s"], pa.float32()),
            "has_watermark": pa.array(a["wm"], pa.bool_()),
            "has_text_overlay": pa.array(a["txt"], pa.bool_()),
            "has_person": pa.array(a["person"], pa.bool_()),
            "has_child": pa.array(a["child"], pa.bool_()),
            "caption_kind": pa.array(kinds, pa.string()),
            "html_caption": pa.array(html, pa.bool_()),
            "dup_group": pa.array(dup_group, pa.int64()),
            "dup_of": pa.array(dup_of, pa.int64()),
            "exact_dup": pa.array(exact, pa.bool_()),
        })


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------
def default_rows_per_shard(rows: int) -> int:
    return min(1_000_000, max(10_000, rows // 10))


def _existing(out: Path, params: dict) -> bool:
    """True if `out` holds this very world; raise if it holds something else; False if empty/absent."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise WriteError("exists and is not a folder; choose another --out for the synthetic demo world", out)
    entries = {p.name for p in out.iterdir()}
    if not entries or entries == {".staging"}:
        return False
    wj, man = out / WORLD_JSON, out / "manifest.json"
    try:
        world = json.loads(wj.read_text()) if wj.is_file() else None
        manifest = json.loads(man.read_text()) if man.is_file() else None
    except (OSError, ValueError):
        world = manifest = None
    if world is not None and world.get("generator") == GENERATOR:
        if manifest is not None:
            ok = (world.get("parameters") == params and manifest.get("parameters") == params
                  and manifest.get("rows") == params["rows"]
                  and all((out / f["path"]).is_file() for f in manifest.get("files", []) + manifest.get("extra_files", [])))
            if ok:
                return True
            raise WriteError(
                f"holds a different synthetic demo world ({_describe(world.get('parameters'))}; asked for "
                f"{_describe(params)}); choose another folder or delete this one", out)
        if entries <= _OWN_ENTRIES:  # an interrupted build of a demo world (no manifest): start again
            for name in entries:
                shutil.rmtree(out / name)
            return False
    raise WriteError("is not empty and holds no synthetic demo world; choose an empty or new folder", out)


def _describe(p: dict | None) -> str:
    if not isinstance(p, dict):
        return "unknown parameters"
    return ", ".join(f"{k}={p.get(k)}" for k in ("rows", "seed", "rows_per_shard", "dim", "generator_version"))


def build_demo_world(out: str | Path, rows: int = 100_000, seed: int = 0, rows_per_shard: int | None = None,
                     dim: int = 512, progress: bool = False) -> Path:
    """Write the synthetic demo world into `out` (LAION layout + ground truth) and return ``Path(out)``.

    Same (rows, seed, rows_per_shard, dim) -> byte-identical data files. If `out` already holds that
    world, nothing is rebuilt; if it holds anything else, :class:`~workbench.errors.WriteError`.
    """
    out = Path(out)
    rows, seed, dim = int(rows), int(seed), int(dim)
    if rows < 1:
        raise WriteError(f"rows must be >= 1, got {rows}", out)
    if seed < 0:
        raise WriteError(f"seed must be >= 0, got {seed}", out)
    if dim < 128:
        raise WriteError(f"dim must be >= 128 for a usable concept space, got {dim}", out)
    rps = default_rows_per_shard(rows) if rows_per_shard is None else int(rows_per_shard)
    if rps < 1:
        raise WriteError(f"rows_per_shard must be >= 1, got {rps}", out)
    params = _parameters(rows, seed, rps, dim)
    if _existing(out, params):
        return out
    builder = _Builder(rows, seed, dim)
    meta = _world_meta(rows, seed, rps, dim)
    bar = _progress(rows, progress)
    model = {"name": MODEL_NAME, "synthetic": True, "dim": dim,
             "note": "synthetic concept-space embeddings (workbench.demo), not a real CLIP model; "
                     "text prompts: workbench.demo.DemoTextEncoder"}
    try:
        _write_world(out, builder, meta, rps, params, model, bar)
    finally:
        if bar is not None:
            bar.close()
    return out


def _write_world(out: Path, builder: "_Builder", meta: dict, rps: int, params: dict, model: dict, bar) -> None:
    from .writer import ShardWriter

    with ShardWriter(out, rows_per_shard=rps, padding=0, parameters=params, model=model) as w:
        # world/ first: a folder holding it but no manifest.json is recognisably an interrupted build
        w.write_extra(WORLD_JSON, lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n"))
        w.write_extra(CONCEPTS_NPY, lambda p: _save_npy(p, builder.concepts))
        w.write_extra(OFFSETS_NPY, lambda p: _save_npy(p, builder.offsets))
        pending: list[pa.Table] = []
        pending_rows, shard = 0, 0
        for b in range(builder.n_blocks):
            img16, txt16, table, truth = builder.block(b)
            w.add(image=img16, text=txt16, metadata=table)
            pending.append(truth)
            pending_rows += truth.num_rows
            while pending_rows >= rps or (b == builder.n_blocks - 1 and pending_rows > 0):
                full = pa.concat_tables(pending)
                take = min(rps, pending_rows)
                _write_truth(w, shard, full.slice(0, take))
                rest = full.slice(take)
                pending, pending_rows, shard = ([rest] if rest.num_rows else []), rest.num_rows, shard + 1
            if bar is not None:
                bar.update(len(img16))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _write_truth(w, shard: int, table: pa.Table) -> None:
    w.write_extra(f"{TRUTH_DIR}/truth_{shard}.parquet", lambda p: pq.write_table(table, p))


def _progress(total: int, on: bool):
    if not on:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="rows", unit_scale=True, desc="synthetic demo world", file=sys.stderr)


def _numbered(folder: Path, prefix: str, suffix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    found = numbered_files(folder, re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    return [found[k] for k in sorted(found)]


def load_ground_truth(world: str | Path) -> pl.DataFrame:
    """The synthetic world's ground truth: one row per collection row, ``row`` = global row id, in order."""
    world = Path(world)
    files = _numbered(world / TRUTH_DIR, "truth_", ".parquet")
    if not files:
        raise LayoutError("no ground_truth/truth_<i>.parquet here: not a synthetic demo world", world)
    df = pl.concat([pl.read_parquet(f) for f in files], how="vertical")
    rows = df["row"].to_numpy()
    if not np.array_equal(rows, np.arange(len(df))):
        raise LayoutError("ground truth rows are not 0..N-1 in order", world / TRUTH_DIR)
    return df


def summarize_world(world: str | Path) -> list[str]:
    """Human-readable lines about the synthetic world: what it holds, and how its columns track the truth.

    Reads the world shard by shard (a few columns at a time): memory does not grow with its size.
    """
    from collections import Counter

    world = Path(world)
    try:
        meta = json.loads((world / WORLD_JSON).read_text())
    except (OSError, ValueError) as exc:
        raise LayoutError(f"not a synthetic demo world (cannot read {WORLD_JSON}: {exc})", world) from None
    truth_files = _numbered(world / TRUTH_DIR, "truth_", ".parquet")
    meta_files = _numbered(world / "metadata", "metadata_", ".parquet")
    if not truth_files or len(truth_files) != len(meta_files):
        raise LayoutError("ground_truth/ and metadata/ do not pair up: not a complete synthetic demo world", world)
    c: Counter = Counter()
    objects, scenes, styles, tags = Counter(), Counter(), Counter(), Counter()
    groups: set[int] = set()
    sim_sum = sim_sq = 0.0
    kinds = ("matched", "partial", "mismatched", "junk")
    for tf, mf in zip(truth_files, meta_files):
        t = pl.read_parquet(tf, columns=["objects", "scene", "style", "is_unsafe", "unsafe_kind", "has_watermark",
                                         "has_text_overlay", "has_person", "has_child", "caption_kind",
                                         "html_caption", "dup_group", "dup_of", "exact_dup"])
        m = pl.read_parquet(mf, columns=["caption", "similarity", "punsafe", "pwatermark", "NSFW"])
        if len(t) != len(m):
            raise LayoutError(f"{tf.name} and {mf.name} differ in rows", world)
        objects.update(t["objects"].explode().drop_nulls().to_list())
        scenes.update(t["scene"].to_list())
        styles.update(t["style"].to_list())
        c["rows"] += len(t)
        for col in ("is_unsafe", "has_watermark", "has_text_overlay", "has_person", "has_child", "html_caption",
                    "exact_dup"):
            c[col] += int(t[col].sum())
        uk = t["unsafe_kind"].fill_null("").to_numpy()
        c["explicit"] += int((uk == "explicit").sum())
        c["gore"] += int((uk == "gore").sum())
        ck = t["caption_kind"].to_numpy()
        sim = m["similarity"].to_numpy()
        for k in kinds:
            c[k] += int((ck == k).sum())
            c["sim_" + k] += float(sim[ck == k].sum())
        sim_sum += float(sim.sum())
        sim_sq += float((sim * sim).sum())
        c["sim30"] += int((sim >= 0.30).sum())
        c["sim28"] += int((sim >= 0.28).sum())
        c["short"] += int((m["caption"].str.len_chars() < 5).sum())
        dg = t["dup_group"].to_numpy()
        groups.update(dg[dg >= 0].tolist())
        c["near"] += int(((t["dup_of"] >= 0) & ~t["exact_dup"]).sum())
        for col, cut, tcol in (("punsafe", 0.5, "is_unsafe"), ("pwatermark", 0.8, "has_watermark")):
            flag, true = m[col].to_numpy() > cut, t[tcol].to_numpy()
            c[col + "_flag"] += int(flag.sum())
            c[col + "_hit"] += int((flag & true).sum())
        tag = m["NSFW"].to_numpy()
        tags.update(tag.tolist())
        c["explicit_nsfw"] += int((tag[uk == "explicit"] == "NSFW").sum())
        c["safe_unlikely"] += int((tag[uk == ""] == "UNLIKELY").sum())
    n = c["rows"]
    p = meta["parameters"]

    def pct(k: float) -> str:
        return f"{100.0 * k / max(n, 1):.1f}%"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else "n/a"

    def share(a: float, b: float) -> str:
        return f"{a / b:.0%}" if b else "n/a"

    def top(counter: Counter) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

    mean = sim_sum / max(n, 1)
    std = math.sqrt(max(sim_sq / max(n, 1) - mean * mean, 0.0))
    by_kind = ", ".join(f"{k} {c['sim_' + k] / c[k]:.3f}" for k in kinds if c[k])
    return [
        f"synthetic demo world: {n:,} rows, dim {p['dim']}, seed {p['seed']}, {p['rows_per_shard']:,} rows per shard "
        "(generated, not real images; the truth of every row is in ground_truth/)",
        "synthetic objects: " + top(objects),
        "synthetic scenes: " + top(scenes),
        "synthetic styles: " + top(styles),
        f"synthetic unsafe stand-ins: {c['is_unsafe']:,} rows ({pct(c['is_unsafe'])}): explicit {c['explicit']:,}, "
        f"gore {c['gore']:,}; people {c['has_person']:,}, children {c['has_child']:,} (never unsafe)",
        f"synthetic watermarks: {c['has_watermark']:,} rows ({pct(c['has_watermark'])}); text overlays / logos "
        f"{c['has_text_overlay']:,} ({pct(c['has_text_overlay'])})",
        "synthetic captions: " + ", ".join(f"{k} {pct(c[k])}" for k in kinds)
        + f"; html-ish {c['html_caption']:,}; shorter than 5 chars {c['short']:,}",
        f"synthetic duplicates: {len(groups):,} groups; near-duplicate rows {c['near']:,} ({pct(c['near'])}), "
        f"exact duplicates (same url + caption) {c['exact_dup']:,} ({pct(c['exact_dup'])})",
        f"synthetic similarity: mean {mean:.3f}, std {std:.3f}; >= 0.30 {pct(c['sim30'])}, >= 0.28 {pct(c['sim28'])}; "
        f"mean by caption: {by_kind}",
        f"synthetic punsafe > 0.5: {pct(c['punsafe_flag'])} of rows; precision "
        f"{ratio(c['punsafe_hit'], c['punsafe_flag'])}, recall {ratio(c['punsafe_hit'], c['is_unsafe'])} against is_unsafe",
        f"synthetic pwatermark > 0.8: {pct(c['pwatermark_flag'])} of rows; precision "
        f"{ratio(c['pwatermark_hit'], c['pwatermark_flag'])}, recall {ratio(c['pwatermark_hit'], c['has_watermark'])} "
        "against has_watermark",
        "synthetic NSFW tag (LAION-400M zero-shot rule on the demo encoder): "
        + ", ".join(f"{k} {pct(tags.get(k, 0))}" for k in ("UNLIKELY", "UNSURE", "NSFW"))
        + f"; explicit stand-ins tagged NSFW {share(c['explicit_nsfw'], c['explicit'])}, safe rows tagged UNLIKELY "
        f"{share(c['safe_unlikely'], n - c['is_unsafe'])}",
    ]
