"""`workbench.export.embed.embed()` end to end (webdataset tars -> LAION shards) against the model alone.

Data: img2dataset-style webdataset shards written under ``benchmarks/_data/embed/``
(``<n:05d>.tar`` holding ``<key>.jpg``, ``<key>.txt`` caption and ``<key>.json``), made from the
real photos in ``/work/shared/data/images/clip_retrieval/*.jpg`` (``--photos``; synthetic pictures
where that folder is absent, e.g. on a GPU machine): a pool of distinct JPEGs, each a random crop
(aspect at most 2:1, sometimes mirrored) resized to a short side of 224-288 px (like img2dataset's
256 px output) at JPEG quality 75-95, used round-robin. Weights are random (no download is possible
here) but go through the real loading path: ``embed(..., model=<config json or name>,
pretrained=<a .pt state dict>)``.

Measured in the same run, per model:
- decode + preprocess alone (read the tar member, ``load_image``, the model's ``preprocess``) on
  one core, in-process, one torch thread, best of 2 passes: images/s per core;
- baseline, the model alone: pre-decoded, pre-processed tensors of the same images, the same
  batch size, ``torch.inference_mode``, ``encode_image`` + L2 normalise (CPU: fp32, torch threads
  = all cores, as ``embed`` uses in-process; CUDA: bf16 autocast on device-resident tensors, as
  ``embed(precision="bf16")`` runs it); open_clip's full ``encode_text`` of the captions (77
  tokens, batches of 4 x the batch) apart, because ``embed`` encodes every caption too (``embed``
  itself runs the text tower only up to each batch's longest caption: less work, same output);
- ``embed()`` end to end (its own ``run["images_per_s"]``: decode + model + captions + writing,
  model loading and tar listing excluded; the call's wall time printed beside it). CPU: with
  ``decode_workers=1`` (the default on 2 cores: one decoding process beside the model's threads)
  and ``decode_workers=0`` (decoding inline), and for the (decode-bound) tiny model also 2; CUDA:
  ``decode_workers=min(16, cores - 1)``, with embed's default JPEG decoding on the GPU (nvJPEG,
  ``gpu_decode="auto"``, where this checkout has it; its decode + preprocess rate measured apart)
  and with ``gpu_decode=False`` (PIL in the CPU workers).
- apart, as parts of what ``embed`` does: open_clip's tokenizer (Python, in ``embed``'s main
  process, after the images); the bounds these give (decode x workers, the image model, the
  captions) and, on CPU, what the parts add up to.

Targets (from the issue): end to end >= 0.70 of the model-only image throughput (not applied to
the tiny model: decode bound by design, it measures the pipeline around the model); on a GPU
(H200), ViT-B-32 >= 8,000 images/s end to end (model alone ~23,000/s bf16), ViT-L-14 >= 1,500/s
(model alone ~1,900/s). The decode bound (per-core decode rate x decode workers) and the model
bound (image + caption encoding) are printed so a miss says what bounds it.

Checked: the end-to-end embeddings (float16 in the shards) equal the model-only ones of the same
images and captions, in the same order (CPU fp32: within fp16 rounding; CUDA bf16: within bf16
rounding), so both measured the same work.

    python benchmarks/bench_embed.py            # CPU: tiny model 16,000 images, ViT-B-32 256 images
    python benchmarks/bench_embed.py --quick    # seconds
    python benchmarks/bench_embed.py --skip-cpu # on a CUDA machine: only the GPU branch
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import random
import resource
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np

import _common as C

PHOTOS = Path("/work/shared/data/images/clip_retrieval")
TINY_CFG = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
POOL = 512  # distinct JPEGs, used round-robin
SPEC_VERSION = 2
NOUNS = ["dog", "cat", "street", "mountain lake", "kitchen", "bicycle", "portrait", "market", "beach", "forest path",
         "old car", "city skyline", "bowl of fruit", "train station", "garden", "living room"]
ADJS = ["a photo of a", "a blurry picture of the", "close-up of a", "an old photograph of a", "stock image: a",
        "a bright, colourful", "black and white shot of a", "a small"]


# -- data --------------------------------------------------------------------------------------------
def _sources(photos: Path):
    from PIL import Image

    files = sorted(p for p in photos.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if photos.is_dir() else []
    if files:
        return [Image.open(p).convert("RGB") for p in files], f"{len(files)} photos from {photos}"
    rng = np.random.default_rng(0)  # no photos (a GPU machine): smooth random pictures with some texture
    out = []
    for i in range(8):
        small = Image.fromarray(rng.integers(0, 256, (6 + i, 8 + i, 3), dtype=np.uint8))
        big = np.asarray(small.resize((400 + 16 * i, 300 + 24 * i), Image.BICUBIC), dtype=np.int16)
        big = np.clip(big + rng.integers(-24, 25, big.shape), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(big))
    return out, f"8 synthetic pictures ({photos} not found)"


def make_pool(photos: Path, n: int, seed: int = 0) -> tuple[list[tuple[bytes, int, int]], str]:
    """`n` distinct JPEGs: (bytes, width, height)."""
    from PIL import Image

    srcs, what = _sources(photos)
    rng = random.Random(seed)
    pool = []
    for i in range(n):
        im = srcs[i % len(srcs)]
        w, h = im.size
        f = rng.uniform(0.7, 1.0)
        cw, ch = max(16, int(w * f)), max(16, int(h * f))
        cw, ch = min(cw, 2 * ch), min(ch, 2 * cw)  # aspect at most 2:1
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        c = im.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            c = c.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        short = rng.choice((224, 256, 256, 256, 288))
        s = short / min(cw, ch)
        c = c.resize((max(1, round(cw * s)), max(1, round(ch * s))), Image.BICUBIC)
        buf = io.BytesIO()
        c.save(buf, "JPEG", quality=rng.choice((75, 85, 90, 95)))
        pool.append((buf.getvalue(), c.width, c.height))
    return pool, what


def _caption(k: int) -> str:
    """A short LAION-like caption; a made-up word in each (names, product codes) so that the
    tokenizer's BPE cache does not see only a few words."""
    r = random.Random(k)
    word = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(4, 9)))
    tail = f" seen from above, by {word.title()}" if k % 3 == 0 else f" {word} {k}"
    return f"{r.choice(ADJS)} {r.choice(NOUNS)}{tail}"


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), 1_700_000_000, 0o644
    tf.addfile(ti, io.BytesIO(data))


def write_tar(path: Path, t: int, first: int, count: int, spt: int, pool) -> None:
    """Samples first .. first+count-1 (global numbers) as webdataset tar number `t` (img2dataset keys)."""
    width = max(4, len(str(spt - 1)))
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
        for k in range(first, first + count):
            key = f"{t:05d}{k - t * spt:0{width}d}"
            jpg, w, h = pool[k % len(pool)]
            cap = _caption(k)
            _add(tf, f"{key}.jpg", jpg)
            _add(tf, f"{key}.txt", cap.encode())
            _add(tf, f"{key}.json", json.dumps({
                "url": f"https://img.synthetic.invalid/{k % 997}/{k}.jpg", "key": key, "status": "success",
                "error_message": None, "width": w, "height": h, "original_width": 2 * w, "original_height": 2 * h,
                "caption": cap, "sha256": None}).encode())
    os.replace(tmp, path)


class Data:
    """Tars of `spt` samples under root/tars_<spt>/ written on first use; a run of n images is a folder
    of links to the first full tars plus its own partial last tar."""

    def __init__(self, root: Path, photos: Path):
        self.root, self.photos, self._pool, self.what = root, photos, None, None

    def pool(self):
        if self._pool is None:
            t0 = time.perf_counter()
            self._pool, self.what = make_pool(self.photos, POOL)
            sizes = [len(b) for b, _, _ in self._pool]
            print(f"JPEG pool: {POOL} variants of {self.what}, {np.mean(sizes) / 1e3:.1f} kB mean, "
                  f"{np.mean([min(w, h) for _, w, h in self._pool]):.0f} px short side mean "
                  f"({time.perf_counter() - t0:.1f} s)")
        return self._pool

    def source(self, n: int, spt: int) -> Path:
        full, rest = divmod(n, spt)
        shared = self.root / f"tars_{spt}"
        shared.mkdir(parents=True, exist_ok=True)
        run = self.root / f"src_{n}x{spt}"
        if run.exists():
            shutil.rmtree(run)
        run.mkdir(parents=True)
        t0, wrote = time.perf_counter(), 0
        for t in range(full):
            p = shared / f"{t:05d}.tar"
            if not p.exists():
                write_tar(p, t, t * spt, spt, spt, self.pool())
                wrote += spt
            (run / p.name).symlink_to(p)
        if rest:
            write_tar(run / f"{full:05d}.tar", full, full * spt, rest, spt, self.pool())
            wrote += rest
        if wrote:
            mb = sum(p.resolve().stat().st_size for p in run.glob("*.tar")) / 1e6
            print(f"wrote {wrote:,} samples as tars of {spt:,} ({time.perf_counter() - t0:.1f} s); "
                  f"this run's source: {n:,} samples, {mb:,.0f} MB")
        return run


def weights(root: Path, model: str) -> tuple[str, str]:
    """(model argument, pretrained .pt) for embed(): random weights saved as a plain state dict."""
    import open_clip
    import torch

    d = root / "models"
    d.mkdir(parents=True, exist_ok=True)
    if model == "tiny":
        cfg = d / "wb-tiny-clip.json"
        cfg.write_text(json.dumps(TINY_CFG))
        arg, name, pt = str(cfg), "wb-tiny-clip", d / "tiny.pt"
    else:
        arg, name, pt = model, model, d / f"{model}.pt"
    if not pt.exists():
        t0 = time.perf_counter()
        if model == "tiny":
            open_clip.add_model_config(str(root / "models" / "wb-tiny-clip.json"))
        torch.manual_seed(0)
        logging.disable(logging.WARNING)  # open_clip's "initialized randomly" notice
        try:
            net = open_clip.create_model(name)
        finally:
            logging.disable(logging.NOTSET)
        tmp = pt.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, pt)
        del net
        print(f"random weights for {name}: {pt} ({pt.stat().st_size / 1e6:.0f} MB, {time.perf_counter() - t0:.1f} s)")
    return arg, str(pt)


# -- measurements ------------------------------------------------------------------------------------
def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def decode(enc, items, repeat: int = 2) -> tuple[object, float]:
    """Pixels of `items` (stacked, CPU) and the decode + preprocess rate on one core (one torch thread),
    best of `repeat` passes."""
    import torch

    from workbench.models.encoders import load_image
    from workbench.io.imagesource import read_image_bytes

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        read_image_bytes(items[0])  # the tar index, cached from now on (as in a decoding worker)
        dt = math.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            pix = [enc.preprocess(load_image(read_image_bytes(it))) for it in items]
            dt = min(dt, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return torch.stack(pix), len(items) / dt


def device_decode(enc, items, batch: int) -> float | None:
    """JPEG decode (torchvision nvJPEG, batched) + the tensor preprocess embed uses, on the device:
    images/s; None where this checkout or torchvision has no device decode path."""
    import warnings

    import torch

    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        from workbench.export.embed import tensor_preprocess
    except ImportError:
        return None
    from workbench.io.imagesource import read_image_bytes

    run = tensor_preprocess(enc.preprocess)
    if run is None:
        return None
    tensors = [torch.frombuffer(bytearray(read_image_bytes(it)), dtype=torch.uint8) for it in items]

    def once():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for a in range(0, len(tensors), batch):
                imgs = decode_jpeg(tensors[a:a + batch], mode=ImageReadMode.RGB, device=enc.device)
                torch.stack([run(im) for im in imgs])
        _sync(True)

    once()  # warm-up: nvJPEG handles, kernels
    t0 = time.perf_counter()
    once()
    return len(items) / (time.perf_counter() - t0)


def passes_rate(one_pass, rows: int, cuda: bool, min_s: float):
    """Run `one_pass` (a list of device tensors over `rows` rows) until `min_s` seconds have passed
    (at most 50 passes): (rows per second, the first pass's outputs concatenated, as numpy)."""
    import torch

    n, t, passes, first = 0, 0.0, 0, None
    while passes == 0 or (t < min_s and passes < 50):
        t0 = time.perf_counter()
        ys = one_pass()
        _sync(cuda)
        t += time.perf_counter() - t0
        n += rows
        if passes == 0:
            first = torch.cat(ys).cpu().numpy()
        passes += 1
    return n / t, first


def model_only(enc, x, tokens_fn, captions, batch: int, cuda: bool, precision: str, min_s: float) -> dict:
    """encode_image + L2 normalise over `x` in batches (reference embeddings from the first pass;
    passes repeated until `min_s` seconds); tokenizing `captions` (once) and encode_text of the
    tokens likewise (4 x batch)."""
    import torch
    import torch.nn.functional as F

    dev = enc.device
    amp = (torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
           if cuda and precision in ("auto", "fp16", "bf16") else None)

    def run(fn, inp):
        if amp is None:
            return F.normalize(fn(inp).float(), dim=-1)
        with amp:
            return F.normalize(fn(inp).float(), dim=-1)

    out = {}
    with torch.inference_mode():
        xs = [x[a:a + batch].to(dev) for a in range(0, len(x), batch)]  # resident on the device
        run(enc.model.encode_image, xs[0])  # warm-up, a full batch (CPU: the first is ~2x slower; CUDA: kernels)
        _sync(cuda)
        out["img_rate"], out["img_ref"] = passes_rate(lambda: [run(enc.model.encode_image, xb) for xb in xs],
                                                      len(x), cuda, min_s)
        tb = 4 * batch
        tokens_fn(captions[:8])
        t0 = time.perf_counter()
        toks = [tokens_fn(captions[a:a + tb]) for a in range(0, len(captions), tb)]
        out["tok_rate"] = len(captions) / (time.perf_counter() - t0)  # open_clip's tokenizer: Python, one core
        toks = [tk.to(dev) for tk in toks]
        run(enc.model.encode_text, toks[0])
        _sync(cuda)
        out["txt_rate"], out["txt_ref"] = passes_rate(lambda: [run(enc.model.encode_text, tk) for tk in toks],
                                                      len(captions), cuda, min_s / 2)
    return out


def has_gpu_decode() -> bool:
    """Whether this checkout's embed() takes ``gpu_decode`` (JPEGs decoded on the device, nvJPEG)."""
    import inspect

    from workbench.export.embed import embed

    return "gpu_decode" in inspect.signature(embed).parameters


def run_embed(src: Path, dst: Path, model: str, pretrained: str, device: str, batch: int, workers: int,
              precision: str, k: int, gpu_decode=None) -> dict:
    from workbench.export.embed import embed

    if dst.exists():
        shutil.rmtree(dst)
    kw = {} if gpu_decode is None else {"gpu_decode": gpu_decode}
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    res = embed(src, dst, model=model, pretrained=pretrained, device=device, batch_size=batch,
                decode_workers=workers, precision=precision, **kw)
    wall = time.perf_counter() - t0
    cores = (_cpu_seconds() - cpu0) / wall
    m = res.manifest
    shard = m["shards"][0]
    files = {f.split("/")[0]: dst / f for f in shard["files"]}
    img = np.load(files["img_emb"], mmap_mode="r")[:k].astype(np.float32)
    txt = np.load(files["text_emb"], mmap_mode="r")[:k].astype(np.float32)
    import pyarrow.parquet as pq

    keys = pq.read_table(files["metadata"], columns=["key"]).column("key").to_pylist()[:k]
    out = {"images_per_s": res.run["images_per_s"], "seconds": res.run["seconds"], "wall_s": wall,
           "cores_busy": cores, "stats": m["outputs"]["embed"], "rows": m["rows"], "img": img, "txt": txt, "keys": keys}
    shutil.rmtree(dst)
    return out


def compare(e2e: dict, ref: dict, keys: list[str], atol: float, min_cos: float | None = None) -> dict:
    """Same keys in the same order, and the embeddings within `atol` (or, where the pixels came from
    another decoder and resize, image embeddings within `min_cos` cosine)."""
    k = len(keys)
    di = float(np.abs(e2e["img"] - ref["img_ref"][:k]).max())
    dt = float(np.abs(e2e["txt"] - ref["txt_ref"][:k]).max())
    cos = float(np.min(np.einsum("ij,ij->i", e2e["img"], ref["img_ref"][:k])
                       / np.linalg.norm(e2e["img"], axis=1) / np.linalg.norm(ref["img_ref"][:k], axis=1)))
    same_keys = e2e["keys"] == keys
    return {"max_abs_img": di, "max_abs_txt": dt, "min_cos_img": cos, "keys_in_order": same_keys,
            "ok": bool(same_keys and dt <= atol and (di <= atol if min_cos is None else cos >= min_cos))}


# -- one model ---------------------------------------------------------------------------------------
def bench_model(label: str, data: Data, root: Path, model_key: str, n: int, k: int, spt: int, device: str,
                batch: int, precision: str, configs: list[tuple[int, object]], min_s: float, target_ratio: float | None,
                target_rate: float | None) -> dict:
    import torch

    from workbench.export.embed import _encoder  # the encoder embed() itself uses (cached): the very same weights
    from workbench.io.imagesource import list_images

    cuda = device.startswith("cuda")
    model, pretrained = weights(root, model_key)
    src = data.source(n, spt)
    items = list_images(src)
    assert len(items) == n, (len(items), n)
    t0 = time.perf_counter()
    enc = _encoder(model, pretrained, device)
    t_load = time.perf_counter() - t0
    if not cuda:
        torch.set_num_threads(os.cpu_count() or 1)  # as embed() does in-process (cores // 1 worker)
    k = min(k, n)
    what = "bf16 autocast" if cuda and precision == "bf16" else ("fp16 autocast" if cuda else "fp32")
    print(f"\n-- {label}: {enc.name} ({enc.dim}-d), {device}, {what}, batch {batch}, {n:,} images "
          f"(model loaded in {t_load:.1f} s; torch threads {torch.get_num_threads()}) --")
    x, dec_rate = decode(enc, items[:k])
    dev_rate = device_decode(enc, items[:k], batch) if cuda and any(g is not False for _, g in configs) else None
    ref = model_only(enc, x, enc.tokenizer, [it.caption for it in items[:k]], batch, cuda, precision, min_s)
    del x
    img_rate, txt_rate, tok_rate = ref["img_rate"], ref["txt_rate"], ref["tok_rate"]
    both = 1 / (1 / img_rate + 1 / txt_rate)
    cap = 1 / (1 / tok_rate + 1 / txt_rate)  # embed does the captions after the images, in the main process
    res = {"model": enc.name, "device": device, "precision": precision, "batch": batch, "images": n,
           "reference_images": k, "decode_per_core": dec_rate, "model_only_image": img_rate,
           "model_only_text": txt_rate, "tokenizer": tok_rate, "model_only_image_plus_text": both, "embed": {}}
    print(f"  decode + preprocess, 1 core (in-process)         {dec_rate:10,.1f} images/s   ({k:,} images)")
    if dev_rate is not None:
        print(f"  decode + preprocess on the device (nvJPEG)       {dev_rate:10,.1f} images/s   (batches of {batch})")
        res["device_decode"] = dev_rate
    print(f"  model only: encode_image + L2 (baseline)         {img_rate:10,.1f} images/s")
    print(f"  tokenizer (open_clip, Python, 1 core)            {tok_rate:10,.1f} captions/s")
    print(f"  model only: encode_text, batch {4 * batch:<5}            {txt_rate:10,.1f} captions/s   (tokens ready)")
    print(f"  model only: image + caption (embed's model work) {both:10,.1f} images/s")
    keys = [it.key for it in items[:k]]
    atol = 2e-3 if not cuda or precision == "fp32" else 2e-2
    for w, gdec in configs:
        name = f"decode_workers={w}" + ("" if gdec is None else f", gpu_decode={gdec!r}")
        try:
            e = run_embed(src, root / "out", model, pretrained, device, batch, w, precision, k, gdec)
        except Exception as exc:  # noqa: BLE001 - e.g. DataLoader workers out of shared memory: say so, go on
            print(f"  embed(), {name}: FAILED: {type(exc).__name__}: {str(exc)[:500]}")
            res["embed"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        rate = e["images_per_s"]
        on_dev = int(e["stats"].get("device_decoded") or 0)
        chk = compare(e, ref, keys, atol, 0.99 if on_dev else None)
        st = e["stats"]
        ratio = rate / img_rate
        tgt = ""
        if target_ratio is not None:
            tgt += f" (target >= {target_ratio:.2f}: {'OK' if ratio >= target_ratio else 'MISSED'})"
        if target_rate is not None:
            tgt += f"; target >= {target_rate:,.0f}/s: {'OK' if rate >= target_rate else 'MISSED'}"
        dec_bound = dec_rate * max(1, min(w, os.cpu_count() or 1))
        print(f"  embed(), {name:<39} {rate:10,.1f} images/s   "
              f"= {ratio:.2f} of model-only image{tgt}, {rate / both:.2f} of image + caption, "
              f"{rate / dec_bound:.2f} of the decode bound ({dec_bound:,.0f}/s)")
        print(f"      run {e['seconds']:.2f} s in embed() ({e['wall_s']:.2f} s wall), {e['cores_busy']:.2f} cores busy; "
              f"embedded {st.get('embedded')}/{st.get('items')}"
              + (f", {on_dev:,} decoded on the device" if "device_decoded" in st else ""))
        print(f"      same embeddings as the model alone ({chk['keys_in_order'] and 'same keys, same order' or 'KEYS DIFFER'}, "
              f"{k:,} images): max |diff| image {chk['max_abs_img']:.1e}, caption {chk['max_abs_txt']:.1e}, "
              f"min cosine {chk['min_cos_img']:.5f} (tolerance {atol:.0e}"
              + ("; images decoded and resized on the device, not by PIL: image criterion min cosine >= 0.99"
                 if on_dev else "") + f"): {'OK' if chk['ok'] else 'DIFFERENT'}")
        if not cuda:
            serial = 1 / (1 / dec_rate + 1 / img_rate + 1 / cap)
            over = 1 / (1 / min(dec_bound, img_rate) + 1 / cap)
            print(f"      parts added up: {serial:,.1f} images/s all serial (decode, image, tokenize, caption); "
                  f"{over:,.1f} with decoding overlapped (if it took no core from the model)")
        res["embed"][name] = {k2: v for k2, v in e.items() if k2 not in ("img", "txt", "keys")} | {
            "ratio_to_model_only_image": ratio, "ratio_to_model_only_image_plus_text": rate / both, "check": chk}
    if cuda:
        w = configs[0][0]
        dec_w = dec_rate * w
        pipeline = 1 / (1 / min(dec_w, img_rate) + 1 / cap)  # images (decode || model), then the captions
        bounds = {"decode (per core x workers)": dec_w, "model: image": img_rate,
                  "captions after the images (tokenize + encode_text)": cap, "all together": pipeline}
        px = 3 * x_side(enc) ** 2 * 4
        rate_px = target_rate or img_rate
        print(f"  bounds: decode {dec_rate:,.0f}/s per core x {w} workers = {dec_w:,.0f}/s; model image {img_rate:,.0f}/s; "
              f"captions (tokenizer {tok_rate:,.0f}/s + encode_text {txt_rate:,.0f}/s, serial after the images) "
              f"{cap:,.0f}/s; together {pipeline:,.0f}/s")
        print(f"  fp32 pixels per image {px / 1e6:.2f} MB: {px * rate_px / 1e9:.1f} GB/s through worker shared memory, "
              f"pinning and host-to-device at {rate_px:,.0f}/s")
        if dev_rate is not None:
            bounds["decode on the device (nvJPEG, gpu_decode runs)"] = dev_rate
            print(f"  gpu_decode runs: decode + preprocess on the device {dev_rate:,.0f}/s (the main process also "
                  f"reads the bytes back from {w} workers and runs the per-image preprocess)")
        low = min((b for b in bounds if b != "all together"), key=bounds.get)
        print(f"  the lowest single bound: {low} ({bounds[low]:,.0f}/s)")
        res["bounds"] = bounds
    return res


def x_side(enc) -> int:
    s = getattr(enc.model.visual, "image_size", 224)
    return int(s[0] if isinstance(s, (tuple, list)) else s)


# -- main --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: seconds")
    ap.add_argument("--batch", type=int, default=64, help="CPU batch size (embed's default)")
    ap.add_argument("--tiny-images", type=int, default=16_000)
    ap.add_argument("--b32-images", type=int, default=256)
    ap.add_argument("--b32-ref", type=int, default=128, help="ViT-B-32 (CPU): images in the model-only baseline")
    ap.add_argument("--tiny-ref", type=int, default=1024, help="tiny model: images in the model-only baseline")
    ap.add_argument("--cpu-workers", default="1,0", help="decode_workers values for the CPU ViT-B-32 runs")
    ap.add_argument("--tiny-workers", default="1,0,2", help="decode_workers values for the tiny model (decode bound)")
    ap.add_argument("--gpu-b32-images", type=int, default=100_000)
    ap.add_argument("--gpu-l14-images", type=int, default=30_000)
    ap.add_argument("--gpu-ref", type=int, default=2048, help="GPU: images decoded for the model-only baseline")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-gpu", action="store_true")
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    ap.add_argument("--keep", action="store_true", help="keep the generated tars and weights for the next run")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.tiny_images, args.tiny_ref, args.b32_images, args.b32_ref = 1000, 1000, 32, 32
        args.gpu_b32_images, args.gpu_l14_images, args.gpu_ref = 10_000, 4_000, 1024
    try:
        import open_clip
        import torch

        import workbench.export.embed  # noqa: F401
    except ImportError as exc:
        print(f"bench_embed: SKIPPED ({exc})")
        return
    C.header("embed: webdataset tars -> LAION shards, against the model alone")
    print(f"torch {torch.__version__}, open_clip {open_clip.__version__}, torch threads {torch.get_num_threads()}, "
          f"CUDA {'available: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")
    noise = C.OtherLoad()
    root = C.DATA_DIR / "embed"
    spec = {"version": SPEC_VERSION, "pool": POOL, "photos": str(args.photos)}
    C.reuse_or_reset(root, spec)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".complete.json").write_text(json.dumps(spec))  # everything below is made on demand, atomically
    data = Data(root, args.photos)
    results: dict = {"machine": C.machine(), "torch": torch.__version__, "open_clip": open_clip.__version__,
                     "quick": args.quick, "runs": {}}
    cores = os.cpu_count() or 1
    try:
        if not args.skip_cpu:
            ws = [(int(w), None) for w in args.cpu_workers.split(",") if w.strip()]
            tws = [(int(w), None) for w in args.tiny_workers.split(",") if w.strip()]
            min_s = 2.0 if args.quick else 6.0
            results["runs"]["cpu tiny"] = bench_model("CPU, tiny open_clip model", data, root, "tiny", args.tiny_images,
                                                      args.tiny_ref, 1000, "cpu", args.batch, "auto", tws, min_s, None, None)
            results["runs"]["cpu ViT-B-32"] = bench_model("CPU, ViT-B-32", data, root, "ViT-B-32", args.b32_images,
                                                          args.b32_ref, 1000, "cpu", args.batch, "auto", ws, 0.0, 0.70, None)
        if torch.cuda.is_available() and not args.skip_gpu:
            w = min(16, cores - 1)
            # this checkout's embed() decodes JPEGs on the GPU by default (gpu_decode="auto"): both ways
            cfgs = [(w, None), (w, False)] if has_gpu_decode() else [(w, None)]
            min_s = 2.0 if args.quick else 5.0
            for key, n, batch, target in (("ViT-B-32", args.gpu_b32_images, 512, 8000.0),
                                          ("ViT-L-14", args.gpu_l14_images, 256, 1500.0)):
                results["runs"][f"cuda {key}"] = bench_model(f"CUDA, {key}", data, root, key, n, args.gpu_ref, 10_000,
                                                             "cuda", batch, "bf16", cfgs, min_s, 0.70, target)
        elif not args.skip_gpu:
            print("\nGPU branch: no CUDA device here; not measured")
    finally:
        out = root / "out"
        if out.exists():
            shutil.rmtree(out)
        if not args.keep:
            C.remove(root)
        C.finish(noise, results, args.json_out)


if __name__ == "__main__":
    main()
