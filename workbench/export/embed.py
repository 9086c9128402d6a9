"""Embedding images and captions with open_clip into LAION-layout shards.

    from workbench.export.embed import embed
    result = embed("./photos", "./emb", model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    result.manifest["outputs"]["embed"]     # images embedded, failures by status

The images (see :mod:`workbench.io.imagesource`) are cut into parts of ``rows_per_shard`` items; each
part is one task (in this process, a local pool or Ray: :mod:`workbench.engine`) that decodes its
images, encodes them and their captions in batches, and writes one shard: ``img_emb`` and
``text_emb`` (L2-normalised float16), ``metadata`` (key, caption, image_path, member, width,
height, similarity, status, error, and url/uid/... when the source has them). A part is written and
journalled like an export part (:func:`workbench.io.staging.staged_task`), so a stopped run resumes
shard by shard, and ``manifest.json`` (the model identity, the source, the counts) comes last.

Bad images never stop a run. Each is recorded with its status (``not_an_image``, ``missing``,
``preprocess_error``) and error, in ``failed/failed_<n>.parquet``, and left out of the shards;
with ``keep_failed=True`` its row is written too, with zero image embedding and the same status.

CPU: float32 (bfloat16 autocast is very slow on CPUs without AMX), torch threads = the cores of the
worker, one decoding process beside the model. CUDA: fp16 (or ``precision="bf16"``) autocast,
DataLoader workers decoding into pinned memory, non-blocking copies.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from workbench.errors import IncompleteError, WorkbenchError, WriteError
from workbench.io.staging import begin_plan, check_destination, journal, locked_write, staged_task, write_manifest, write_parquet
from workbench.io.imagesource import META_KEYS, ImageItem, fingerprint, list_images, read_image_bytes
from workbench.io.progress import progress_bar
from workbench.io.writer import MANIFEST_FORMAT, MANIFEST_VERSION, _npy_header, shard_name

STATUSES = ("success", "not_an_image", "missing", "preprocess_error")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass
class EmbedResult:
    manifest: dict
    run: dict = field(default_factory=dict)  # parts done now / resumed, seconds, images/s


@lru_cache(maxsize=2)
def _encoder(model: str, pretrained: str | None, device: str):
    from workbench.models.encoders import load_encoder

    enc = load_encoder(model, pretrained, device=device)
    enc.model.eval()
    return enc


def default_decode_workers(device: str) -> int:
    cores = os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(1, min(16, cores - 1))
    return 1 if cores >= 2 else 0


# -- decoding ----------------------------------------------------------------------------------------
def _decode(item: ImageItem, preprocess) -> tuple[object, str, str | None, int | None, int | None]:
    """(pixels or None, status, error, width, height) for one item; never raises for a bad image."""
    try:
        data = read_image_bytes(item)
    except WorkbenchError as exc:
        return None, "missing", str(exc), None, None
    return _decode_bytes(data, preprocess)


class _Decoded:
    """A torch Dataset over a part's items: decoded, preprocessed pixels and each item's status."""

    def __init__(self, items: list[ImageItem], preprocess):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return (i, *_decode(self.items[i], self.preprocess))


def _collate(batch):
    import torch

    ok = [b for b in batch if b[1] is not None]
    pixels = torch.stack([b[1] for b in ok]) if ok else None
    return pixels, [b[0] for b in ok], [(b[0], b[2], b[3], b[4], b[5]) for b in batch]


def _batches(items: list[ImageItem], preprocess, batch_size: int, workers: int, cuda: bool):
    """(pixels of the decodable images, their indices, (index, status, error, w, h) of every item)."""
    if workers <= 0:
        for a in range(0, len(items), batch_size):
            yield _collate([(i, *_decode(items[i], preprocess)) for i in range(a, min(a + batch_size, len(items)))])
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(_Decoded(items, preprocess), batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                        pin_memory=cuda, prefetch_factor=4, persistent_workers=False)
    yield from loader


# -- JPEG decoding on the device (nvJPEG through torchvision) ------------------------------------------
JPEG_MAGIC = b"\xff\xd8\xff"


def tensor_preprocess(preprocess):
    """The encoder's PIL transforms (resize of the shorter side, centre crop, normalise) as tensor ops
    on a decoded uint8 CHW image, wherever it lives; None for a pipeline of another shape."""
    from torchvision import transforms as T

    size = crop = mean = std = None
    interpolation = T.InterpolationMode.BICUBIC
    for t in getattr(preprocess, "transforms", []):
        if isinstance(t, T.Resize):
            size, interpolation = t.size, t.interpolation
        elif isinstance(t, T.CenterCrop):
            crop = t.size
        elif isinstance(t, T.Normalize):
            mean, std = t.mean, t.std
        elif not type(t).__name__.startswith(("MaybeConvert", "MaybeToTensor", "ToTensor", "_convert", "function")):
            return None  # e.g. ResizeKeepRatio: keep the PIL path
    if size is None or crop is None or mean is None:
        return None
    import torch
    from torchvision.transforms.v2 import functional as TF

    stats: dict = {}  # device -> (mean, std): made once, not copied to the device per image

    def run(image):
        x = TF.resize(image, size, interpolation=interpolation, antialias=True)
        x = TF.center_crop(x, crop).float().div_(255)
        if x.device not in stats:
            stats[x.device] = (torch.tensor(mean, device=x.device).view(-1, 1, 1),
                               torch.tensor(std, device=x.device).view(-1, 1, 1))
        m, sd = stats[x.device]
        return (x - m) / sd

    return run


class _Raw:
    """A Dataset for device decoding: JPEG items come back as their bytes (decoded later, batched, on
    the device); every other item is decoded and preprocessed here, as on the CPU path."""

    def __init__(self, items: list[ImageItem], preprocess):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            data = read_image_bytes(self.items[i])
        except WorkbenchError as exc:
            return i, None, None, "missing", str(exc)
        if data[:3] == JPEG_MAGIC:
            return i, data, None, None, None
        pixels, status, error, w, h = _decode_bytes(data, self.preprocess)
        return i, None, (pixels, w, h), status, error


def _decode_bytes(data: bytes, preprocess):
    """(pixels or None, status, error, width, height) for encoded image bytes."""
    from workbench.models.encoders import load_image

    try:
        image = load_image(data)
    except WorkbenchError as exc:
        return None, "not_an_image", exc.reason, None, None
    try:
        return preprocess(image), "success", None, image.width, image.height
    except Exception as exc:  # noqa: BLE001 - a transform failing on an odd image (e.g. 0 pixels wide)
        return None, "preprocess_error", f"{type(exc).__name__}: {exc}", image.width, image.height


def _as_list(batch):  # a module-level collate function: picklable under spawn/forkserver workers
    return batch


def _device_batches(items, preprocess, batch_size: int, workers: int, device: str, counts: dict):
    """Batches like :func:`_batches`, JPEGs decoded together on `device` (a JPEG the device decoder
    refuses is decoded again on the CPU, so its status is the CPU path's)."""
    import warnings

    import torch
    from torch.utils.data import DataLoader

    from torchvision.io import ImageReadMode
    from torchvision.io import decode_jpeg as _decode_jpeg

    def decode_jpeg(x, **kw):
        with warnings.catch_warnings():  # torchvision 0.29 marks its codecs deprecated (for torchcodec)
            warnings.simplefilter("ignore", DeprecationWarning)
            return _decode_jpeg(x, **kw)

    run = tensor_preprocess(preprocess)
    loader = DataLoader(_Raw(items, preprocess), batch_size=batch_size, num_workers=workers,
                        collate_fn=_as_list, prefetch_factor=4 if workers else None)
    for batch in loader:
        out: dict[int, tuple] = {}
        jpegs = [(i, data) for i, data, _, _, _ in batch if data is not None]
        decoded = []
        if jpegs:
            tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for _, d in jpegs]
            try:
                decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
            except RuntimeError:  # one bad JPEG fails the batch: decode them one by one
                decoded = []
                for t in tensors:
                    try:
                        decoded.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
                    except RuntimeError:
                        decoded.append(None)
        for (i, data), img in zip(jpegs, decoded):
            if img is None:
                out[i] = _decode_bytes(data, preprocess)
            else:
                out[i] = (run(img), "success", None, int(img.shape[-1]), int(img.shape[-2]))
                counts["device_decoded"] = counts.get("device_decoded", 0) + 1
        for i, data, done, status, error in batch:
            if data is None:
                out[i] = (None, status, error, None, None) if done is None else (done[0], status, error, done[1], done[2])
        order = [b[0] for b in batch]
        ok = [i for i in order if out[i][0] is not None]
        pixels = torch.stack([out[i][0].to(device) for i in ok]) if ok else None
        yield pixels, ok, [(i, out[i][1], out[i][2], out[i][3], out[i][4]) for i in order]


def device_decode_available(device: str) -> bool:
    if not str(device).startswith("cuda"):
        return False
    try:
        import torch
        from torchvision.io import decode_jpeg

        return bool(torch.cuda.is_available()) and decode_jpeg is not None
    except ImportError:
        return False


# -- one part ---------------------------------------------------------------------------------------
class _TextTower:
    """``encode_text`` on the tokens up to the batch's longest caption instead of the full context.

    CLIP's text transformer is causal and pools at the end-of-text token, so the padding after the
    longest caption never reaches a position that is read: the output is the same, for a fraction
    of the work (captions average ~15 of 77 tokens). Used only for open_clip's ``CLIP`` with argmax
    pooling, and checked against the full ``encode_text`` on the first batch; any difference and the
    full path is used for the rest of the run."""

    def __init__(self, enc):
        model = enc.model
        self.enc = enc
        self.ok = (type(model).__name__ == "CLIP" and getattr(model, "text_pool_type", None) == "argmax"
                   and getattr(model, "attn_mask", None) is not None)
        self.checked = False

    def _trimmed(self, text):
        from open_clip.transformer import text_global_pool

        m = self.enc.model
        n = int(text.argmax(dim=-1).max()) + 1
        t = text[:, :n]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(t).to(cast) + m.positional_embedding[:n].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:n, :n])
        x = text_global_pool(m.ln_final(x), t, "argmax")
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if callable(proj) and not hasattr(proj, "shape") else x @ proj
        return x

    def __call__(self, tokens, precision: str) -> np.ndarray:
        if not self.ok:
            return self.enc._run(self.enc.model.encode_text, tokens, precision)
        if not self.checked:
            self.checked = True
            full = self.enc._run(self.enc.model.encode_text, tokens, precision)
            try:
                fast = self.enc._run(self._trimmed, tokens, precision)
            except Exception:  # noqa: BLE001 - a model of another shape: the full path it is
                self.ok = False
                return full
            self.ok = bool(np.allclose(full, fast, atol=1e-3))
            return full
        return self.enc._run(self._trimmed, tokens, precision)


def embed_part(task: tuple) -> dict:
    """Embed one part's items and write its shard (an engine task; see the module docstring)."""
    dst, number, items, opts = task
    return staged_task(dst, f"embed-{number:06d}", lambda tmp: _write_part(tmp, number, items, opts),
                       {"items": len(items)}, f"shard {number}")


def _write_part(tmp: Path, number: int, items: list[ImageItem], opts: dict) -> list[dict]:
    import torch

    enc = _encoder(opts["model"], opts["pretrained"], opts["device"])
    if not enc.device.startswith("cuda") and opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    dim, n = enc.dim, len(items)
    img = np.zeros((n, dim), np.float16)  # stored as fp16 at once: a 1M-row part of 768-d is 1.5 GB
    status = ["success"] * n
    errors: list[str | None] = [None] * n
    width: list[int | None] = [None] * n
    height: list[int | None] = [None] * n
    cuda = enc.device.startswith("cuda")
    progress = opts.get("_progress")
    gpu_decode = opts.get("gpu_decode", "auto")
    on_device = (device_decode_available(enc.device) if gpu_decode == "auto" else bool(gpu_decode)) \
        and tensor_preprocess(enc.preprocess) is not None
    decoded: dict = {"device_decoded": 0}
    batches = (_device_batches(items, enc.preprocess, opts["batch_size"], opts["decode_workers"], enc.device, decoded)
               if on_device
               else _batches(items, enc.preprocess, opts["batch_size"], opts["decode_workers"], cuda))
    for pixels, idx, info in batches:
        for i, st, err, w, h in info:
            status[i], errors[i], width[i], height[i] = st, err, w, h
        if pixels is not None:
            img[idx] = enc._run(enc.model.encode_image, pixels, opts["precision"]).astype(np.float16)
        if progress is not None:
            progress(len(info))
    ok = np.array([s == "success" for s in status])
    keep = np.ones(n, bool) if opts["keep_failed"] else ok
    rows = np.nonzero(keep)[0]
    captions = [items[i].caption or "" for i in rows]
    txt16 = np.zeros((len(rows), dim), np.float16)
    text_tower = _TextTower(enc)
    order = np.argsort([len(c) for c in captions], kind="stable")  # similar lengths together: less padding
    for a in range(0, len(rows), opts["batch_size"]):
        pick = order[a:a + opts["batch_size"]]
        tokens = enc.tokenizer([captions[i] for i in pick])
        txt16[pick] = text_tower(tokens, opts["precision"])
    img16 = img[rows] if len(rows) < n else img
    # similarity of the rows as stored (fp16), as a reader of the shards would compute it
    dots = np.empty(len(rows), np.float32)
    for a in range(0, len(rows), 65_536):  # in chunks: no float32 copy of the whole part
        dots[a:a + 65_536] = np.einsum("ij,ij->i", img16[a:a + 65_536].astype(np.float32),
                                       txt16[a:a + 65_536].astype(np.float32))
    sim = np.where(ok[rows], dots, np.nan).astype(np.float32)

    name = shard_name(number, opts["padding"])
    files = []
    if len(rows):
        for folder, arr in (("img_emb", img16), ("text_emb", txt16)):
            rel = f"{folder}/{folder}_{name}.npy"
            (tmp / folder).mkdir(parents=True, exist_ok=True)
            with open(tmp / rel, "wb") as f:
                f.write(_npy_header((len(rows), dim), np.dtype("float16")))
                f.write(arr.tobytes())
            files.append({"path": rel, "rows": int(len(rows))})
        meta = _metadata(items, rows, status, errors, width, height, sim, opts["meta_columns"])
        (tmp / "metadata").mkdir(parents=True, exist_ok=True)
        write_parquet(meta, tmp / f"metadata/metadata_{name}.parquet")
        files.append({"path": f"metadata/metadata_{name}.parquet", "rows": int(len(rows))})
    bad = np.nonzero(~ok)[0]
    counts = {f"status_{s}": int(sum(1 for x in status if x == s)) for s in STATUSES}
    if len(bad):
        (tmp / "failed").mkdir(parents=True, exist_ok=True)
        rel = f"failed/failed_{name}.parquet"
        write_parquet(pa.table({
            "key": pa.array([items[i].key for i in bad], pa.string()),
            "image_path": pa.array([items[i].path for i in bad], pa.string()),
            "member": pa.array([items[i].member for i in bad], pa.string()),
            "status": pa.array([status[i] for i in bad], pa.string()),
            "error": pa.array([errors[i] for i in bad], pa.string()),
        }), tmp / rel)
        files.append({"path": rel, "rows": int(len(bad))})
    stats = {"items": n, "embedded": int(ok.sum()), "written_rows": int(len(rows)), **counts, **decoded}
    files[0]["stats"] = stats  # a part always writes something: its shard, or its failures
    return files


def _metadata(items, rows, status, errors, width, height, sim, meta_columns: list[str]) -> pa.Table:
    cols = {
        "key": pa.array([items[i].key for i in rows], pa.string()),
        "caption": pa.array([items[i].caption for i in rows], pa.string()),
        "image_path": pa.array([items[i].path for i in rows], pa.string()),
        "member": pa.array([items[i].member for i in rows], pa.string()),
        "width": pa.array([width[i] for i in rows], pa.int64()),
        "height": pa.array([height[i] for i in rows], pa.int64()),
        "similarity": pa.array(sim, pa.float32()),
        "status": pa.array([status[i] for i in rows], pa.string()),
        "error": pa.array([errors[i] for i in rows], pa.string()),
    }
    for k in meta_columns:
        vals = [items[i].meta.get(k) for i in rows]
        if k in ("original_width", "original_height"):
            cols[k] = pa.array([None if v is None else int(v) for v in vals], pa.int64())
        else:
            cols[k] = pa.array([None if v is None else str(v) for v in vals], pa.string())
    return pa.table(cols)


# -- the run ----------------------------------------------------------------------------------------
def embed(src: str | Path, dst: str | Path, model: str, pretrained: str | None = None, **options) -> EmbedResult:
    """Embed the images under `src` into `dst` (options and behaviour: :func:`_embed`), holding the
    destination's lock (:func:`workbench.io.staging.locked_write`): a second embedding run or export
    into the same `dst` is refused at once; a refusal before any shard is written leaves `dst` as it was.

    Without `pretrained` (and a model spec that names no weights) the model's weights would be random
    and its embeddings meaningless: refused unless ``random_weights=True`` (then recorded in the manifest)."""
    check_weights(model, pretrained, options.get("random_weights", False))  # before anything is created
    return locked_write(dst, [Path(src)], "embedding run", lambda: _embed(src, dst, model, pretrained, **options))


def check_weights(model, pretrained, random_weights: bool = False) -> None:
    """Refuse a model that would get random weights (no tag or checkpoint given, none in its spec, not
    a hub model) unless `random_weights` says so; refuse `random_weights` with weights given."""
    from workbench.models.encoders import parse_model_spec

    given = pretrained is not None and str(pretrained).strip() != ""
    if not given:
        spec = str(model)
        name, tag = parse_model_spec(spec)
        given = tag is not None or name.startswith(("hf-hub:", "local-dir:"))
    if given and random_weights:
        raise WorkbenchError(f"model {str(model)!r}: weights are given, so random weights cannot be: "
                             "leave out --random-weights (random_weights=True)")
    if not given and not random_weights:
        raise WorkbenchError(f"model {str(model)!r} has no weights given: its embeddings would come from random "
                             "weights and mean nothing; give --pretrained TAG_OR_CHECKPOINT (pretrained=...), or "
                             "--random-weights (random_weights=True) to embed with random weights on purpose")


def _embed(
    src: str | Path,
    dst: str | Path,
    model: str,
    pretrained: str | None = None,
    *,
    device: str = "auto",
    batch_size: int = 64,
    rows_per_shard: int = 1_000_000,
    padding: int = 0,
    keep_failed: bool = False,
    captions: str | Path | None = None,
    decode_workers: int | None = None,
    precision: str = "auto",
    gpu_decode="auto",
    engine=None,
    progress=False,
    random_weights: bool = False,
) -> EmbedResult:
    """Embed the images under `src` into LAION-layout shards in `dst` (new, empty, or an unfinished
    run of the same plan, which is resumed). `random_weights`: see :func:`embed`.

    `gpu_decode`: ``"auto"`` decodes JPEGs on the GPU (torchvision's nvJPEG) when the device is CUDA;
    ``True`` forces the tensor decode path on the model's device (on a CPU too), ``False`` never."""
    from workbench.engine import LocalEngine

    t0 = time.perf_counter()
    check_weights(model, pretrained, random_weights)
    if batch_size < 1 or rows_per_shard < 1:
        raise WorkbenchError("batch size and rows per shard must be >= 1")
    if precision not in PRECISIONS:
        raise WorkbenchError(f"precision must be one of {', '.join(PRECISIONS)}")
    src, dst = Path(src), Path(dst)
    items = list_images(src, captions)
    state = check_destination(dst, [src])  # a table of paths: DST may sit beside it, not around it
    in_process = engine is None or (engine.kind == "local" and engine.workers == 1)
    # the model's identity and dim; where tasks run elsewhere (Ray: maybe a head without a GPU) it is
    # built on the CPU here, and each worker builds its own on `device`
    enc = _encoder(str(model), None if pretrained is None else str(pretrained), device if in_process else "cpu")
    workers = engine.workers if engine is not None else 1
    opts = {
        "model": str(model), "pretrained": None if pretrained is None else str(pretrained),
        "device": enc.device if in_process else device,
        "batch_size": int(batch_size), "padding": int(padding), "keep_failed": bool(keep_failed),
        "precision": precision, "gpu_decode": gpu_decode,
        "decode_workers": default_decode_workers(enc.device if in_process else device) if decode_workers is None
        else int(decode_workers),
        "threads": max(1, (os.cpu_count() or 1) // workers),
        "meta_columns": [k for k in META_KEYS if any(k in it.meta for it in items)],
        "random_weights": bool(random_weights),
    }
    plan = {"source": fingerprint(items), "items": len(items), "model": enc.identity,
            "rows_per_shard": int(rows_per_shard), "padding": int(padding), "keep_failed": bool(keep_failed),
            "batch_size": int(batch_size), "precision": precision, "device": device, "gpu_decode": gpu_decode}
    digest, finished = begin_plan(dst, state, plan, "embedding run")
    if finished is not None:
        return EmbedResult(finished, {"parts": 0, "resumed": 0, "already_complete": True,
                                      "seconds": round(time.perf_counter() - t0, 3)})
    parts = [items[a:a + rows_per_shard] for a in range(0, len(items), rows_per_shard)]
    records = {n: journal(dst, f"embed-{n:06d}") for n in range(len(parts))}
    records = {n: r for n, r in records.items() if r is not None}
    todo = [n for n in range(len(parts)) if n not in records]
    resumed = len(records)

    bar = progress_bar(progress, len(items), "embedding", unit="img", initial=sum(len(parts[n]) for n in records),
                       unit_scale=True) if progress else None
    own = engine is None
    engine = engine or LocalEngine(1)
    gpus = 1 if str(device).startswith("cuda") and engine.kind == "ray" else 0
    t_run = time.perf_counter()
    try:
        tasks = []
        for n in todo:
            o = dict(opts)
            if in_process and bar is not None:
                o["_progress"] = bar.update  # per batch; a worker's progress arrives with its part
            tasks.append((str(dst), n, parts[n], o))
        try:
            for k, rec in engine.map(embed_part, tasks, gpus_per_task=gpus):
                records[todo[k]] = rec
                if bar is not None and not in_process:
                    bar.update(len(parts[todo[k]]))
        except WorkbenchError as exc:
            if isinstance(exc, WriteError) or len(records) > resumed:
                said = exc.reason if exc.path == str(dst) and exc.row is None else str(exc)  # DST is named once
                raise IncompleteError(f"{said} [{len(records)} of {len(parts)} shards are written and kept; "
                                      "run the same command again to resume]", dst) from None
            raise
    finally:
        if bar is not None:
            bar.close()
        if own:
            engine.close()
    seconds_now = time.perf_counter() - t_run
    manifest = _manifest(src, dst, items, parts, records, enc, opts, plan, digest, rows_per_shard)
    done_now = sum(len(parts[n]) for n in todo)
    return EmbedResult(manifest, {"parts": len(parts), "done_now": len(todo), "resumed": resumed,
                                  "already_complete": False, "seconds": round(time.perf_counter() - t0, 3),
                                  "images_per_s": round(done_now / seconds_now, 2) if seconds_now > 0 and done_now else None})


def _manifest(src, dst, items, parts, records, enc, opts, plan, digest, rows_per_shard) -> dict:
    files, extra, shards = [], [], []
    totals: dict = {}
    for n in range(len(parts)):
        rec = records[n]
        for e in rec["files"]:
            (extra if e["path"].startswith("failed/") else files).append(e)
        shard_files = [e["path"] for e in rec["files"] if not e["path"].startswith("failed/")]
        rows = next((e["rows"] for e in rec["files"] if e["path"].startswith("img_emb/")), 0)
        if shard_files:
            shards.append({"name": shard_name(n, opts["padding"]), "rows": rows, "files": shard_files})
        for k, v in rec.get("stats", {}).items():
            totals[k] = totals.get(k, 0) + v
    totals.setdefault("items", len(items))
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "layout": "embeddings",
        "rows": sum(s["rows"] for s in shards),
        "dim": enc.dim,
        "dtype": "float16",
        "rows_per_shard": int(rows_per_shard),
        "padding": opts["padding"],
        "shards": shards,
        "files": files,
        "extra_files": extra,
        "outputs": {"embed": totals},
        "source": {"path": str(Path(src).resolve()), "items": len(items), "fingerprint": plan["source"]},
        "model": enc.identity,
        "random_weights": bool(opts.get("random_weights")),  # True: the embeddings mean nothing
        "parameters": {k: v for k, v in opts.items() if not k.startswith("_")},
        "plan": digest,
    }
    return write_manifest(dst, manifest)


def embed_summary(result: EmbedResult) -> dict:
    """What ``workbench embed --json`` reports of a run (less ``src``/``dst``): ``items``,
    ``embedded``, ``failed`` (``{status: count}`` of every non-success status with a count),
    ``rows``, ``shards``, ``dim``, ``model``, ``random_weights``, and the run's ``parts``,
    ``resumed``, ``already_complete``, ``images_per_s``, ``seconds`` (None when absent)."""
    m = result.manifest
    totals = m["outputs"]["embed"]
    failed = {k[len("status_"):]: v for k, v in totals.items() if k.startswith("status_") and k != "status_success" and v}
    return {"items": totals.get("items"), "embedded": totals.get("embedded"), "failed": failed, "rows": m["rows"],
            "shards": len(m["shards"]), "dim": m["dim"], "model": m["model"],
            "random_weights": bool(m.get("random_weights")),
            **{k: result.run.get(k) for k in ("parts", "resumed", "already_complete", "images_per_s", "seconds")}}
