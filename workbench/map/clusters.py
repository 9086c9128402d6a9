"""Clusters for the map: spherical k-means over a collection, caption-word labels, and which rows to draw.

    from workbench.map.clusters import kmeans, label_clusters, stratified_sample, ClusterScorer
    ids, centroids = kmeans(c)                     # int32 per row (-1: invalid row), (k, dim) float32
    labels = label_clusters(ids, captions)         # {cluster: "cat, kitten, kitty"}
    draw = stratified_sample(ids, 200_000)         # sorted row ids to plot, every cluster included

k-means
    ``faiss.Kmeans(spherical=True)`` trained on float32 unit rows of a uniform sample of
    `sample` rows (:func:`workbench.map.projection.sample_rows`; invalid rows dropped), then one
    streamed pass (``iter_embeddings``) assigns every valid row to the centroid of largest dot
    product (= cosine: rows and centroids are unit vectors). Rows are not centred: the ids match
    a plain nearest-centroid assignment of the rows as ``iter_embeddings`` gives them.
    Default ``k``: ``clamp(round(sqrt(n) / 4), 2, 64)`` for ``n`` rows (19 at 6,000 rows, 64 from
    ~66,000 rows on): coarse groups a person can look at and name, not fine topics.
"""
from __future__ import annotations

import math

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.map.projection import _gather, _int, _version, check_kind, sample_rows
from workbench.io.kernels import unit_rows
from workbench.scoring.kmeans import faiss_kmeans
from workbench.scoring.scorers import Scorer

DEFAULT_SAMPLE = 100_000
MAX_DEFAULT_K = 64
ASSIGN_CHUNK_ROWS = 65_536

# English stopwords (sklearn's ENGLISH_STOP_WORDS, the words of 3+ letters) plus caption boilerplate
# that says nothing about what a picture shows.
STOPWORDS = frozenset("""
about above across after afterwards again against all almost alone along already also although always
among amongst amoungst amount and another any anyhow anyone anything anyway anywhere are around back
became because become becomes becoming been before beforehand behind being below beside besides between
beyond bill both bottom but call can cannot cant con could couldnt cry describe detail done down due
during each eight either eleven else elsewhere empty enough etc even ever every everyone everything
everywhere except few fifteen fifty fill find fire first five for former formerly forty found four from
front full further get give had has hasnt have hence her here hereafter hereby herein hereupon hers
herself him himself his how however hundred inc indeed interest into its itself keep last latter latterly
least less ltd made many may meanwhile might mill mine more moreover most mostly move much must myself
name namely neither never nevertheless next nine nobody none noone nor not nothing now nowhere off often
once one only onto other others otherwise our ours ourselves out over own part per perhaps please put
rather same see seem seemed seeming seems serious several she should show side since sincere six sixty
some somehow someone something sometime sometimes somewhere still such system take ten than that the
their them themselves then thence there thereafter thereby therefore therein thereupon these they thick
thin third this those though three through throughout thru thus together too top toward towards twelve
twenty two under until upon very via was well were what whatever when whence whenever where whereafter
whereas whereby wherein whereupon wherever whether which while whither who whoever whole whom whose why
will with within without would yet you your yours yourself yourselves
amp quot nbsp http https www com html jpg jpeg png gif img src href alt
""".split())


# -- k-means ---------------------------------------------------------------------------------------
def default_k(n: int) -> int:
    """``clamp(round(sqrt(n) / 4), 2, 64)``."""
    return int(min(MAX_DEFAULT_K, max(2, round(math.sqrt(max(n, 0)) / 4))))


def kmeans(collection, k: int | None = None, kind: str = "image", sample: int = DEFAULT_SAMPLE, seed: int = 0,
           niter: int = 20, info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id per row, int32, -1 for invalid rows; centroids (k, dim) float32 unit rows).

    Spherical k-means on a sample, then a streamed nearest-centroid assignment (module docstring).
    `k` is lowered to the number of valid sampled rows when it exceeds it. `info`, when a dict,
    receives k, the sample size and the cluster sizes."""
    check_kind(collection, kind, "k-means")
    k = _int("k", k, 1, allow_none=True)
    sample = _int("sample", sample, 1)
    seed = _int("seed", seed, 0)
    niter = _int("niter", niter, 1)
    import faiss  # noqa: F401 - refuse early, before the sample is read, when faiss is missing

    n = len(collection)
    k = default_k(n) if k is None else k
    rows, x = _gather(collection, sample_rows(collection, min(sample, n), seed), kind)
    if len(rows) == 0:
        raise WorkbenchError("k-means found no valid rows in its sample (are the embeddings NaN or zero?)",
                             collection.path)
    k = min(k, len(rows))
    cent, _ = faiss_kmeans(x, k, niter=niter, seed=seed, max_points_per_centroid=max(256, -(-len(x) // k)))
    del x
    ids = np.full(n, -1, np.int32)
    for ch in collection.iter_embeddings(kind, chunk_rows=ASSIGN_CHUNK_ROWS):
        lab = np.argmax(ch.data @ cent.T, axis=1).astype(np.int32)
        lab[~ch.valid] = -1
        ids[ch.start:ch.start + len(lab)] = lab
    if info is not None:
        info.update({"k": k, "sample": int(len(rows)), "niter": niter, "seed": seed,
                     "sizes": np.bincount(ids[ids >= 0], minlength=k).tolist()})
    return ids, cent


class ClusterScorer(Scorer):
    """The k-means cluster of every row (:func:`kmeans`) as a cached whole-collection score, column
    ``cluster`` (Int32; null for invalid rows)."""

    needs = "global"
    column = "cluster"
    schema = {"cluster": pl.Int32}

    def __init__(self, k: int | None = None, sample: int = DEFAULT_SAMPLE, seed: int = 0, kind: str = "image",
                 niter: int = 20):
        self.k, self.sample, self.seed, self.kind, self.niter = k, sample, seed, kind, niter
        self.info: dict = {}
        self.centroids: np.ndarray | None = None

    def prepare(self, collection) -> None:
        check_kind(collection, self.kind, "k-means")
        _int("k", self.k, 1, allow_none=True)
        _int("sample", self.sample, 1)
        _int("seed", self.seed, 0)
        _int("niter", self.niter, 1)

    def spec(self) -> dict:
        return {"scorer": "clusters", "k": self.k, "default_k": "clamp(round(sqrt(n)/4),2,64)", "sample": self.sample,
                "seed": self.seed, "kind": self.kind, "niter": self.niter,
                "faiss": _version("faiss-cpu", "faiss-gpu", "faiss")}

    def compute_all(self, collection, progress: bool = False) -> dict[str, np.ndarray]:
        ids, self.centroids = kmeans(collection, k=self.k, kind=self.kind, sample=self.sample, seed=self.seed,
                                     niter=self.niter, info=self.info)
        return {"cluster": ids}

    def finish(self, arrays: dict[str, np.ndarray], valid: np.ndarray) -> pl.DataFrame:
        return super().finish(arrays, valid & (arrays["cluster"] >= 0))


# -- DataComp's image-based filter -------------------------------------------------------------------
DATACOMP_ROWS_PER_CLUSTER = 128  # DataComp: 100,000 centroids for the 12.8M-row small pool


def reference_k(n: int) -> int:
    """Default k for reference clusters: ``clamp(n // 128, 2, 100_000)`` (DataComp's rows per centroid)."""
    return int(min(100_000, max(2, n // DATACOMP_ROWS_PER_CLUSTER)))


def nearest_centroids(centroids: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Sorted ids of the centroids that are the nearest (largest dot product) of some reference row."""
    ref = unit_rows(reference)
    near = np.empty(len(ref), np.int64)
    for a in range(0, len(ref), ASSIGN_CHUNK_ROWS):
        near[a:a + ASSIGN_CHUNK_ROWS] = np.argmax(ref[a:a + ASSIGN_CHUNK_ROWS] @ centroids.T, axis=1)
    return np.unique(near)


class ReferenceClusterScorer(Scorer):
    """DataComp's image-based filter as a cached whole-collection score: spherical k-means of the
    image embeddings (:func:`kmeans`), and which clusters are the nearest centroid of some row of a
    reference set. Columns ``<column>`` (Int32 cluster id; null for invalid rows) and
    ``<column>_near`` (Boolean: the row's cluster is near the reference).

    The reference is image embeddings (``files``: .npy, e.g. ImageNet train images, as DataComp
    did) or text: ``texts`` (prompts) or class ``names`` put into ``template`` and embedded by the
    text tower (the prompts stand in for the images; the modality gap makes this coarser)."""

    needs = "global"

    def __init__(self, column: str, k: int | None = None, files=None, texts=None, names: str | None = None,
                 template: str = "a photo of a {}.", sample: int | None = None, seed: int = 0, encoder=None,
                 base=None):
        self.column = column
        self.schema = {column: pl.Int32, column + "_near": pl.Boolean}
        self.k, self.files, self.texts, self.names, self.template = k, files, texts, names, template
        self.sample, self.seed, self.encoder, self.base = sample, seed, encoder, base
        self.reference: np.ndarray | None = None
        self.info: dict = {}
        self._ref_id: dict = {}

    def prepare(self, collection) -> None:
        from workbench.models.prompts import load_prompt_embeddings, text_encoder

        check_kind(collection, "image", "image-based clusters")
        _int("k", self.k, 1, allow_none=True)
        _int("sample", self.sample, 1, allow_none=True)
        _int("seed", self.seed, 0)
        if self.files:
            self.reference, sha = load_prompt_embeddings(self.files, self.base, collection.dim)
            self._ref_id = {"files_sha256": sha}
            return
        if self.names is not None:
            from workbench.curation.wordlists import words

            if "{}" not in self.template:
                raise WorkbenchError(f"image clusters: the template must hold {{}} for the class name, got {self.template!r}")
            texts = [self.template.format(w) for w in words(self.names, self.base)]
        else:
            texts = list(self.texts or [])
        if not texts:
            raise WorkbenchError("image clusters need a reference: .npy embeddings, prompts, or a class-name list")
        self.encoder = self.encoder or text_encoder(collection)
        if self.encoder.dim != collection.dim:
            raise WorkbenchError(f"the text encoder gives {self.encoder.dim}-d prompts but the collection's "
                                 f"embeddings are {collection.dim}-d", collection.path)
        self.reference = np.asarray(self.encoder.encode_text(texts), dtype=np.float32)
        self._ref_id = {"texts": texts, "model": self.encoder.identity}

    def spec(self) -> dict:
        return {"scorer": "image_clusters", "k": self.k, "default_k": "clamp(n//128,2,100000)", "sample": self.sample,
                "seed": self.seed, "reference": self._ref_id, "faiss": _version("faiss-cpu", "faiss-gpu", "faiss")}

    def compute_all(self, collection, progress: bool = False) -> dict[str, np.ndarray]:
        n = len(collection)
        k = reference_k(n) if self.k is None else self.k
        sample = self.sample or min(max(DEFAULT_SAMPLE, 40 * k), 2_000_000)  # ~6 GB at 768-d, k=100,000
        ids, cent = kmeans(collection, k=k, kind="image", sample=sample, seed=self.seed, info=self.info)
        near = nearest_centroids(cent, self.reference)
        self.info["near_clusters"] = len(near)
        return {self.column: ids, self.column + "_near": np.isin(ids, near) & (ids >= 0)}

    def finish(self, arrays: dict[str, np.ndarray], valid: np.ndarray) -> pl.DataFrame:
        return super().finish(arrays, valid & (arrays[self.column] >= 0))


def _cluster_ids(clusters) -> np.ndarray:
    """int64 ids from an array or a polars Series; nulls / NaN (the scorer's invalid rows) become -1."""
    if isinstance(clusters, pl.Series):
        clusters = clusters.fill_null(-1).to_numpy()
    cl = np.asarray(clusters)
    if cl.ndim != 1:
        raise WorkbenchError(f"clusters must be one id per row, got shape {cl.shape}")
    if cl.dtype.kind == "f":
        cl = np.where(np.isfinite(cl), cl, -1)
    elif cl.dtype.kind not in "iub":
        raise WorkbenchError(f"clusters must be integer ids, got dtype {cl.dtype}")
    return cl.astype(np.int64)


# -- labels ------------------------------------------------------------------------------------------
TOKEN = r"[^\W\d_]+"  # runs of letters (any script): digits and punctuation split and drop out


def label_clusters(clusters: np.ndarray, captions, top: int = 3, min_df: int = 2) -> dict[int, str]:
    """A short label per cluster (every id >= 0 in `clusters`): its `top` most distinctive caption
    words joined by ", " ("" when no word qualifies).

    Tokens are lower-cased runs of letters of 3+ characters, English stopwords and caption
    boilerplate (:data:`STOPWORDS`) removed; each caption counts a word once. A word's score in
    cluster c is ``p_c * log(p_c / p)``: ``p_c`` the share of c's captions holding it, ``p`` the
    share over all clustered captions (frequent in the cluster, and more frequent there than
    elsewhere: words every cluster uses score ~0). Words held by fewer than `min_df` of the
    cluster's captions, or not over-represented in it, are skipped; ties go alphabetically.
    `captions` (list, array or polars Series, None allowed) is aligned with `clusters` (an array or
    a polars Series such as ClusterScorer's column; negative ids and nulls are ignored). Vectorised in polars: ~1M captions in a few seconds.
    """
    cl = _cluster_ids(clusters)
    top = _int("top", top, 1)
    min_df = _int("min_df", min_df, 1)
    cap = captions if isinstance(captions, pl.Series) else pl.Series(list(captions) if not isinstance(captions, np.ndarray)
                                                                     else captions.tolist(), dtype=pl.Utf8)
    if len(cap) != len(cl):
        raise WorkbenchError(f"captions ({len(cap)}) and clusters ({len(cl)}) must be aligned, one per row")
    ids = sorted(int(c) for c in np.unique(cl[cl >= 0])) if len(cl) else []
    out = {c: "" for c in ids}
    if not ids:
        return out
    df = pl.DataFrame({"c": pl.Series(cl), "t": cap.cast(pl.Utf8)}).filter(pl.col("c") >= 0)
    n_c = df.group_by("c").agg(pl.len().alias("n_c"))
    n_all = len(df)
    words = (
        df.lazy()
        .with_row_index("i")
        .select("i", "c", pl.col("t").str.to_lowercase().str.extract_all(TOKEN).alias("w"))
        .explode("w")
        .filter(pl.col("w").str.len_chars() > 2)
        .filter(~pl.col("w").is_in(list(STOPWORDS)))
        .unique(["i", "w"])
        .group_by("c", "w")
        .agg(pl.len().alias("df_c"))
        .with_columns(pl.col("df_c").sum().over("w").alias("df"))
        .join(n_c.lazy(), on="c")
        .filter(pl.col("df_c") >= min_df)
        .with_columns((pl.col("df_c") / pl.col("n_c")).alias("p_c"), (pl.col("df") / n_all).alias("p"))
        .with_columns((pl.col("p_c") * (pl.col("p_c") / pl.col("p")).log()).alias("score"))
        .filter(pl.col("score") > 0)
        .sort(["c", "score", "w"], descending=[False, True, False])
        .group_by("c", maintain_order=True)
        .head(top)
        .group_by("c", maintain_order=True)
        .agg(pl.col("w").str.join(", ").alias("label"))
        .collect()
    )
    for c, label in zip(words["c"].to_list(), words["label"].to_list()):
        out[int(c)] = label
    return out


# -- what to draw ------------------------------------------------------------------------------------
def _quotas(sizes: np.ndarray, max_points: int, min_per_cluster: int) -> np.ndarray:
    """Rows to draw per cluster: proportional to `sizes`, at least ``min(min_per_cluster, size)``,
    at most the size, summing to ``min(max_points, sizes.sum())`` (largest remainders round)."""
    sizes = sizes.astype(np.int64)
    floor = np.minimum(sizes, min_per_cluster)
    if floor.sum() > max_points:  # the minimums alone do not fit: an equal share each, capped by the minimum
        lo, hi = 0, int(floor.max())
        while lo < hi:  # the largest level L with sum(min(floor, L)) <= max_points
            mid = (lo + hi + 1) // 2
            if np.minimum(floor, mid).sum() <= max_points:
                lo = mid
            else:
                hi = mid - 1
        q = np.minimum(floor, lo)
        left = max_points - int(q.sum())
        more = np.flatnonzero(floor > lo)
        more = more[np.argsort(-sizes[more], kind="stable")][:left]
        q[more] += 1
        return q
    # water-filling: q_c = clip(t * size_c, floor_c, size_c), t chosen so the sum is max_points
    lo, hi = 0.0, 1.0
    for _ in range(100):
        t = (lo + hi) / 2
        if np.clip(t * sizes, floor, sizes).sum() <= max_points:
            lo = t
        else:
            hi = t
    exact = np.clip(lo * sizes, floor, sizes)
    q = np.floor(exact).astype(np.int64)
    left = max_points - int(q.sum())
    room = np.flatnonzero(q < sizes)
    room = room[np.lexsort((-sizes[room], -(exact[room] - q[room])))][:max(left, 0)]
    q[room] += 1
    return q


def stratified_sample(clusters: np.ndarray, max_points: int = 200_000, seed: int = 0,
                      min_per_cluster: int = 50) -> np.ndarray:
    """Sorted row ids (int64) to draw on the map: every row with a cluster id >= 0 when there are at
    most `max_points` of them; else per cluster a share proportional to its size but at least
    ``min(min_per_cluster, size)`` (so small clusters stay visible), `max_points` in all (when
    there are more clusters than `max_points`, the largest clusters get the points). Rows with id -1
    or null (invalid) are never drawn. Uniform within each cluster; the same for the same `seed`."""
    cl = _cluster_ids(clusters)
    max_points = _int("max_points", max_points, 1)
    min_per_cluster = _int("min_per_cluster", min_per_cluster, 0)
    seed = _int("seed", seed, 0)
    rows = np.flatnonzero(cl >= 0).astype(np.int64)
    if len(rows) <= max_points:
        return rows
    groups, inv = np.unique(cl[rows], return_inverse=True)
    sizes = np.bincount(inv, minlength=len(groups))
    quota = _quotas(sizes, max_points, min_per_cluster)
    key = np.random.default_rng(seed).random(len(rows))
    order = np.lexsort((key, inv))  # by cluster, then by a random key: a uniform draw within each cluster
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(len(rows)) - starts[inv[order]]
    return np.sort(rows[order[rank < quota[inv[order]]]])
