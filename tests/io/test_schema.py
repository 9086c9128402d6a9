import polars as pl

from workbench.io.schema import canonical_exprs, canonical_mapping


def view(schema):
    df = pl.DataFrame(schema=schema)
    return df.select(canonical_exprs(dict(df.schema)))


def test_laion400m_release_spellings():
    m = canonical_mapping(["SAMPLE_ID", "URL", "TEXT", "LICENSE", "NSFW", "similarity", "WIDTH", "HEIGHT"])
    assert m == {"url": "URL", "caption": "TEXT", "similarity": "similarity", "nsfw_tag": "NSFW",
                 "width": "WIDTH", "height": "HEIGHT", "key": "SAMPLE_ID", "license": "LICENSE"}


def test_laion5b_embedding_side_prefers_original_size():
    cols = ["image_path", "caption", "NSFW", "similarity", "LICENSE", "url", "key", "status", "width", "height",
            "original_width", "original_height", "exif", "md5"]
    m = canonical_mapping(cols)
    assert m["width"] == "original_width" and m["height"] == "original_height"
    assert m["caption"] == "caption" and m["key"] == "key" and m["image_path"] == "image_path"
    out = view({c: pl.Utf8 for c in cols} | {"width": pl.Int64, "original_width": pl.Int64})
    # the resized width stays visible under another name; nothing is dropped
    assert "width_src" in out.columns and "original_width" in out.columns


def test_originals_kept_and_types_cast():
    out = view({"URL": pl.Utf8, "TEXT": pl.Utf8, "SAMPLE_ID": pl.Int64, "punsafe": pl.Float32, "row": pl.Int64})
    assert {"URL", "TEXT", "SAMPLE_ID", "url", "caption", "key", "punsafe", "row_src"} <= set(out.columns)
    assert out.schema["key"] == pl.Utf8 and out.schema["punsafe"] == pl.Float64


def test_datacomp_preference():
    cols = ["uid", "url", "text", "clip_b32_similarity_score", "clip_l14_similarity_score"]
    assert canonical_mapping(cols, {"similarity": "clip_l14_similarity_score"})["similarity"] == "clip_l14_similarity_score"
    assert canonical_mapping(cols)["caption"] == "text" and canonical_mapping(cols)["uid"] == "uid"
