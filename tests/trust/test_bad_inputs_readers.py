"""Bad source files: damaged or ambiguous parquet, broken .npz archives, embeddings of the wrong dtype,
symlink loops, truncated tars. Each is refused with one line naming the file (exit 2, no traceback,
sources unchanged, no destination left behind: the shared harness, tests/badinput.py), at open
where the headers show it (`info`), else at the first read (`validate`, `apply`, `sample`, `audit`,
`export`); `embed` embeds what a truncated tar still holds and lists the rest as failed items."""
from __future__ import annotations

import json
import os
import tarfile
import zipfile

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from badinput import refused, run_cli
from conftest import IMAGES, make_datacomp, make_embeddings, make_parquet_only, make_webdataset, needs_shared

needs_photos = needs_shared("images/clip_retrieval")

CAPTIONS = "rules: [{caption_length: {min_chars: 1}}]\n"  # reads the caption column
SIMILARITY = "rules: [{column: similarity, min: 0.25}]\n"  # reads the similarity column only


def recipe(tmp_path, text=CAPTIONS):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def rows_file(tmp_path, rows=(0, 1, 6)):
    p = tmp_path / "rows.parquet"
    pl.DataFrame({"row": list(rows)}).write_parquet(p)
    return p


# -- ways to break a parquet --------------------------------------------------------------------------
def rewrite(path, edit):
    """Rewrite a parquet file's table through `edit(table) -> table`."""
    pq.write_table(edit(pq.read_table(path)), path)


def duplicate_column(name):
    return lambda t: pa.Table.from_arrays([*t.columns, t.column(name)], names=[*t.column_names, name])


def case_twin(name, twin):
    return lambda t: pa.Table.from_arrays([*t.columns, t.column(name)], names=[*t.column_names, twin])


def not_utf8(name):
    def edit(t):
        vals = [s.encode() for s in t.column(name).to_pylist()]
        vals[1] = b"\xff\xfe not utf-8"
        return t.set_column(t.column_names.index(name), name, pa.array(vals, pa.binary()).view(pa.string()))
    return edit


def damage_column(path, column):
    """Every byte of one column chunk (its pages) damaged; the footer stays readable."""
    md = pq.read_metadata(path)
    j = md.schema.to_arrow_schema().names.index(column)
    data = bytearray(path.read_bytes())
    for g in range(md.num_row_groups):
        c = md.row_group(g).column(j)
        start = c.dictionary_page_offset or c.data_page_offset
        for i in range(start, start + c.total_compressed_size):
            data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    assert pq.read_metadata(path).num_rows == md.num_rows  # the footer still reads


# -- ways to break an .npz member ---------------------------------------------------------------------
def drop_member(npz, member):
    z = np.load(npz)
    arrays = {k: z[k] for k in z.files if k != member}
    z.close()
    np.savez(npz, **arrays)


def damage_member(npz, member, where):
    """Flip bytes in the deflate stream of `member`: near its start (the .npy header inside) or mid-way."""
    with zipfile.ZipFile(npz) as zf:
        info = zf.getinfo(member + ".npy")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    start = npz.read_bytes()[info.header_offset:]
    name_len, extra_len = int.from_bytes(start[26:28], "little"), int.from_bytes(start[28:30], "little")
    begin = info.header_offset + 30 + name_len + extra_len
    a = begin + 2 if where == "start" else begin + info.compress_size // 2
    data = bytearray(npz.read_bytes())
    for i in range(a, a + 48):
        data[i] ^= 0x5A
    npz.write_bytes(bytes(data))


def save_as(npy, dtype):
    a = np.load(npy)
    if dtype == "bfloat16":  # numpy has no bfloat16: it saves one (ml_dtypes) as raw 2-byte values
        b = (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view("V2")
    elif dtype == "<U8":
        b = a.astype("<U8")
    else:
        b = a.astype(dtype)
    np.save(npy, b)


def loop(path):
    """Replace `path` (a file or folder) by a symlink to itself."""
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    os.symlink(path.name, path)
    return path


def truncate_tar(tar, keep_members: int):
    """Cut a tar inside the data of member number `keep_members` (0-based): the members before it stay whole."""
    with tarfile.open(tar) as tf:
        m = tf.getmembers()[keep_members]
    data = tar.read_bytes()
    tar.write_bytes(data[: m.offset_data + m.size // 2])


# -- the corpus: each case builds its broken collection and the command that must refuse it -----------
def parquet_only(tmp_path):
    return make_parquet_only(tmp_path / "pq", rows=(6, 4))


def part(root, i):
    return next(p for p in sorted(root.glob("*.parquet")) if f"part-{i:05d}" in p.name)


def laion(tmp_path, **kw):
    return make_embeddings(tmp_path / "emb", rows=(5, 4), dim=8, **kw)


def case_dup_info(tmp_path):
    root = parquet_only(tmp_path)
    f = part(root, 1)
    rewrite(f, duplicate_column("TEXT"))
    return ["info", root], [f.name, "two columns named 'TEXT'"]


def case_dup_apply(tmp_path):
    root = laion(tmp_path)
    rewrite(root / "metadata/metadata_1.parquet", duplicate_column("similarity"))
    return ["apply", recipe(tmp_path, SIMILARITY), root, "--dry-run"], ["metadata_1.parquet", "similarity"]


def case_case_twins_info(tmp_path):
    root = parquet_only(tmp_path)
    f = part(root, 0)
    rewrite(f, case_twin("TEXT", "text"))
    return ["info", root], [f.name, "'TEXT' and 'text'", "caption"]


def case_case_twins_validate(tmp_path):
    root = laion(tmp_path)
    rewrite(root / "metadata/metadata_0.parquet", case_twin("URL", "url"))
    return ["validate", root], ["metadata_0.parquet", "'URL' and 'url'"]


def case_pages_apply(tmp_path):
    root = parquet_only(tmp_path)
    f = part(root, 1)
    damage_column(f, "TEXT")
    return ["apply", recipe(tmp_path), root, "--dry-run"], [f.name, "TEXT"]


def case_pages_sample(tmp_path):
    root = parquet_only(tmp_path)
    f = part(root, 0)
    damage_column(f, "similarity")
    return ["sample", root, "--by", "similarity", "--method", "top", "--n", 2, "--out", tmp_path / "dst"], \
        [f.name, "similarity"]


def case_pages_audit(tmp_path):
    root = laion(tmp_path)
    damage_column(root / "metadata/metadata_1.parquet", "TEXT")
    return ["audit", root, "--term", "caption"], ["metadata_1.parquet"]


def case_pages_export_rows(tmp_path):
    root = laion(tmp_path)
    damage_column(root / "metadata/metadata_1.parquet", "URL")
    return ["export", root, tmp_path / "dst", "--rows", rows_file(tmp_path)], ["metadata_1.parquet"]


def case_pages_apply_write(tmp_path):
    root = laion(tmp_path)
    damage_column(root / "metadata/metadata_0.parquet", "TEXT")  # the recipe reads similarity; the export reads all
    return ["apply", recipe(tmp_path, SIMILARITY), root, tmp_path / "dst"], ["metadata_0.parquet", "broken source"]


def case_utf8_apply(tmp_path):
    root = parquet_only(tmp_path)
    f = part(root, 1)
    rewrite(f, not_utf8("TEXT"))
    return ["apply", recipe(tmp_path), root, "--dry-run"], [f.name, "TEXT", "UTF-8"]


def case_utf8_apply_write(tmp_path):
    root = laion(tmp_path)
    rewrite(root / "metadata/metadata_1.parquet", not_utf8("TEXT"))  # polars never reads TEXT for this recipe
    return ["apply", recipe(tmp_path, SIMILARITY), root, tmp_path / "dst"], ["metadata_1.parquet", "TEXT", "UTF8"]


def case_not_parquet(tmp_path):
    root = parquet_only(tmp_path)
    (root / "part-00002-x.parquet").write_text("URL,TEXT\nhttps://a,b\n")
    return ["info", root], ["part-00002-x.parquet", "not a readable parquet"]


def case_zero_bytes(tmp_path):
    root = laion(tmp_path)
    (root / "metadata/metadata_1.parquet").write_bytes(b"")
    return ["validate", root], ["metadata_1.parquet", "0 bytes"]


def case_parquet_folder(tmp_path):
    root = parquet_only(tmp_path)
    (root / "part-00002-x.parquet").mkdir()
    return ["info", root], ["part-00002-x.parquet", "folder"]


def datacomp(tmp_path, compressed=False):
    return make_datacomp(tmp_path / "dc", rows=(4, 6), models=("l14",), compressed=compressed)


def case_npz_member_info(tmp_path):
    root = datacomp(tmp_path)
    drop_member(root / "00000001.npz", "l14_img")
    return ["info", root], ["00000001.npz", "l14_img"]


def case_npz_member_validate(tmp_path):
    root = datacomp(tmp_path)
    drop_member(root / "00000000.npz", "l14_txt")  # the first archive is the odd one out
    return ["validate", root], ["00000000.npz", "l14_txt"]


def case_npz_member_apply(tmp_path):
    root = datacomp(tmp_path)
    drop_member(root / "00000001.npz", "l14_img")
    return ["apply", recipe(tmp_path), root, "--dry-run"], ["00000001.npz", "l14_img"]


def case_deflate_header_info(tmp_path):
    root = datacomp(tmp_path, compressed=True)
    damage_member(root / "00000001.npz", "l14_img", "start")
    return ["info", root], ["00000001.npz", "l14_img"]


def case_deflate_data_validate(tmp_path):
    root = datacomp(tmp_path, compressed=True)
    damage_member(root / "00000001.npz", "l14_img", "middle")
    return ["validate", root, "--kind", "image"], ["00000001.npz", "l14_img"]


def case_deflate_data_apply_write(tmp_path):
    root = datacomp(tmp_path, compressed=True)
    damage_member(root / "00000001.npz", "l14_img", "middle")  # the header reads: found when the rows are copied
    return ["apply", recipe(tmp_path), root, tmp_path / "dst"], ["00000001.npz", "l14_img", "broken source"]


def dtype_case(dtype, verb="info"):
    def make(tmp_path):
        root = make_embeddings(tmp_path / "emb", rows=(5, 3), dim=4, text=False)
        save_as(root / "img_emb/img_emb_1.npy", dtype)
        argv = {"info": ["info", root], "validate": ["validate", root],
                "apply": ["apply", recipe(tmp_path), root, tmp_path / "dst"]}[verb]
        return argv, ["img_emb_1.npy", "must be floats"]
    return make


def case_npy_rows_claimed(tmp_path):
    root = laion(tmp_path)
    f = root / "img_emb/img_emb_1.npy"
    f.write_bytes(f.read_bytes()[:-20])  # the header says 4 rows, the file holds fewer
    return ["apply", recipe(tmp_path), root, tmp_path / "dst"], ["img_emb_1.npy", "truncated", "row 2"]


def case_loop_root(tmp_path):
    return ["info", loop(tmp_path / "coll")], ["coll", "symlink loop"]


def case_loop_folder(tmp_path):
    root = laion(tmp_path)
    loop(root / "text_emb")
    return ["validate", root], ["text_emb", "symlink loop"]


def case_loop_shard_file(tmp_path):
    root = laion(tmp_path)
    loop(root / "metadata/metadata_1.parquet")
    return ["apply", recipe(tmp_path), root, "--dry-run"], ["metadata_1.parquet", "symlink loop"]


def case_loop_parquet_only(tmp_path):
    root = parquet_only(tmp_path)
    loop(root / "part-00002-x.parquet")
    return ["sample", root, "--by", "similarity", "--method", "top", "--n", 2, "--out", tmp_path / "dst"], \
        ["part-00002-x.parquet", "symlink loop"]


def case_loop_npy(tmp_path):
    root = laion(tmp_path)
    loop(root / "img_emb/img_emb_0.npy")
    return ["export", root, tmp_path / "dst", "--rows", rows_file(tmp_path)], ["img_emb_0.npy", "symlink loop"]


def case_truncated_tar_apply(tmp_path):
    root = make_webdataset(tmp_path / "wds", per_shard=(3, 2))
    truncate_tar(root / "00000.tar", 3)  # inside the second sample's image
    return ["apply", recipe(tmp_path), root, tmp_path / "dst", "--format", "webdataset"], \
        ["00000.tar", "unreadable tar", "broken source"]


def case_truncated_tar_export_rows(tmp_path):
    root = make_webdataset(tmp_path / "wds", per_shard=(3, 2))
    truncate_tar(root / "00001.tar", 1)
    return ["export", root, tmp_path / "dst", "--rows", rows_file(tmp_path, (0, 3)), "--format", "webdataset"], \
        ["00001.tar", "broken source"]


CASES = {
    "parquet: one name twice (info)": case_dup_info,
    "parquet: one name twice (apply)": case_dup_apply,
    "parquet: TEXT and text (info)": case_case_twins_info,
    "parquet: URL and url (validate)": case_case_twins_validate,
    "parquet: damaged pages (apply --dry-run)": case_pages_apply,
    "parquet: damaged pages (sample)": case_pages_sample,
    "parquet: damaged pages (audit)": case_pages_audit,
    "parquet: damaged pages (export --rows)": case_pages_export_rows,
    "parquet: damaged pages of a column the recipe skips (apply SRC DST)": case_pages_apply_write,
    "parquet: not UTF-8 (apply --dry-run)": case_utf8_apply,
    "parquet: not UTF-8 in a column the recipe skips (apply SRC DST)": case_utf8_apply_write,
    "parquet: not a parquet (info)": case_not_parquet,
    "parquet: zero bytes (validate)": case_zero_bytes,
    "parquet: a folder named *.parquet (info)": case_parquet_folder,
    "npz: member missing (info)": case_npz_member_info,
    "npz: member missing in the first archive (validate)": case_npz_member_validate,
    "npz: member missing (apply --dry-run)": case_npz_member_apply,
    "npz: deflate damaged at the header (info)": case_deflate_header_info,
    "npz: deflate damaged in the data (validate)": case_deflate_data_validate,
    "npz: deflate damaged in the data (apply SRC DST)": case_deflate_data_apply_write,
    "npy: int8 (info)": dtype_case("int8"),
    "npy: bfloat16 saved as void (info)": dtype_case("bfloat16"),
    "npy: strings (validate)": dtype_case("<U8", "validate"),
    "npy: bool (apply SRC DST)": dtype_case("bool", "apply"),
    "npy: complex64 (info)": dtype_case("complex64"),
    "npy: big-endian float32 (info)": dtype_case(">f4"),
    "npy: header claims more rows than the file holds (apply SRC DST)": case_npy_rows_claimed,
    "loop: the collection path (info)": case_loop_root,
    "loop: a shard folder (validate)": case_loop_folder,
    "loop: a metadata file (apply --dry-run)": case_loop_shard_file,
    "loop: a parquet of a parquet-only folder (sample)": case_loop_parquet_only,
    "loop: an embedding file (export --rows)": case_loop_npy,
    "tar: truncated source (apply SRC DST --format webdataset)": case_truncated_tar_apply,
    "tar: truncated source (export --rows --format webdataset)": case_truncated_tar_export_rows,
}


@pytest.mark.parametrize("case", CASES)
def test_bad_source_is_refused_naming_the_file(tmp_path, case):
    argv, names = CASES[case](tmp_path)
    src = next(a for a in argv[1:] if hasattr(a, "name") and a.suffix != ".yaml")
    if src.is_symlink():  # the collection path is the loop: check the folder around it
        src = src.parent
    refused(argv, names=names, sources=[src], dst=tmp_path / "dst")


# -- embed: a source folder with a loop is refused; a truncated tar is embedded as far as it reads ----------
def _embed_argv(tiny_clip, src, dst):
    return ["embed", src, dst, "--model", tiny_clip.cfg, "--pretrained", tiny_clip.ckpt, "--device", "cpu",
            "--batch-size", 8]


@needs_photos
@pytest.mark.parametrize("where", ["inside", "source"])
def test_embed_refuses_a_symlink_loop(tiny_clip, tmp_path, where):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_bytes(sorted((IMAGES / "clip_retrieval").glob("*.jpg"))[0].read_bytes())
    bad = loop(src / "sub") if where == "inside" else loop(tmp_path / "looped")
    if where == "source":
        src = bad
    refused(_embed_argv(tiny_clip, src, tmp_path / "dst"), names=[bad.name, "symlink loop"],
            sources=[tmp_path / "photos"], dst=tmp_path / "dst")


def test_embed_takes_what_a_truncated_tar_holds_and_lists_the_rest(tiny_clip, tmp_path):
    root = make_webdataset(tmp_path / "wds", per_shard=(3, 2))  # 00000.tar: 3 samples of jpg, txt, json
    truncate_tar(root / "00000.tar", 3)  # inside the second sample's jpg
    rc, out, err = run_cli(_embed_argv(tiny_clip, root, tmp_path / "dst") + ["--json"])
    assert rc == 0 and "Traceback" not in err, err
    res = json.loads(out)
    # the whole first sample, the cut one, the unreadable rest of the tar; the other tar's 2 samples
    assert res["items"] == 5 and res["embedded"] == 3
    failed = pl.read_parquet(tmp_path / "dst/failed/failed_0.parquet").sort("key")
    assert failed["key"].to_list() == ["000000002", "00000:unreadable"]
    cut, rest = failed["error"].to_list()
    assert "000000002.jpg is cut short" in cut and "truncated tar" in cut
    assert "unreadable tar past byte" in rest and "00000.tar" in failed["image_path"][1]
    assert set(failed["status"].to_list()) == {"missing"}


# -- dtypes: written as stored, or widened with the conversion recorded --------------------------------
def test_float64_embeddings_are_exported_as_stored(tmp_path):
    root = make_embeddings(tmp_path / "emb", rows=(5, 3), dim=4, dtype="float64")
    rc, _, err = run_cli(["apply", recipe(tmp_path), root, tmp_path / "dst"])
    assert rc == 0, err
    src = np.concatenate([np.load(root / f"img_emb/img_emb_{i}.npy") for i in (0, 1)])
    out = np.load(tmp_path / "dst/img_emb/img_emb_0.npy")
    assert out.dtype == np.float64 and np.array_equal(out, src)  # never narrowed to float32
    manifest = json.loads((tmp_path / "dst/manifest.json").read_text())
    assert manifest["dtype"] == "float64" and manifest["dtype_conversion"] is None


def test_mixed_dtypes_are_widened_and_the_manifest_says_so(tmp_path):
    root = make_embeddings(tmp_path / "emb", rows=(5, 3), dim=4, dtype="float16", text=False)
    save_as(root / "img_emb/img_emb_1.npy", "float32")
    rc, _, err = run_cli(["apply", recipe(tmp_path), root, tmp_path / "dst"])
    assert rc == 0, err
    out = np.load(tmp_path / "dst/img_emb/img_emb_0.npy")
    assert out.dtype == np.float32
    assert np.array_equal(out[:5], np.load(root / "img_emb/img_emb_0.npy").astype(np.float32))  # lossless
    manifest = json.loads((tmp_path / "dst/manifest.json").read_text())
    assert manifest["dtype"] == "float32"
    assert manifest["dtype_conversion"]["from"] == ["float16", "float32"] and manifest["dtype_conversion"]["lossless"]
