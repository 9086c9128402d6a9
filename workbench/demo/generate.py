"""Generating the synthetic demo world: its concept space, and its rows block by block.

Rows are generated in blocks of :data:`BLOCK_ROWS` (the world does not depend on the shard size),
each from its own seeded generators: what each image shows (the truth), its duplicates (within a
block and carried into the next), its image embedding, caption, url, text embedding (through
:class:`~workbench.demo.textencoder.DemoTextEncoder`), LAION-400M's NSFW tag and the stand-in
detector scores. See :mod:`workbench.demo.build` for the geometry and what it is tuned to.
"""
from __future__ import annotations

import math
import random

import mmh3
import numpy as np
import pyarrow as pa

from workbench.demo.captions import _Captioner, _slug
from workbench.demo.textencoder import CONCEPTS_NPY, MODEL_NAME, OFFSETS_NPY, TRUTH_DIR, DemoTextEncoder, _unit
from workbench.demo.vocabulary import (_CI, CONCEPTS, GEOMETRY, LAION400M_NSFW_PROMPTS, MARKS, NSFW_SAFE_BELOW,
                                       OBJECT_NAMES, OBJECTS, PARENTS, PEOPLE, SCENES, STOPWORDS, STYLE_PARENTS,
                                       STYLES, UNSAFE, VOCABULARY)

GENERATOR = "workbench.demo.build"  # recorded in world.json and the manifest: the world's generator
GENERATOR_VERSION = 1
BLOCK_ROWS = 10_000  # rows generated at once; also img2dataset's shard size, which `key` follows

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
