import pytest

from workbench.errors import RecipeError
from workbench.curation.wordlists import NAMED, words


def test_imagenet_class_names():
    names = words("imagenet-1k")
    assert len(names) == 1000 and "goldfish" in names and "tabby cat" in names
    assert "imagenet-1k" in NAMED


def test_a_word_file_relative_to_a_base(tmp_path):
    (tmp_path / "w.txt").write_text("# animals\ncat\n\n  tabby cat  # with a comment\ndog\n", encoding="utf-8")
    assert words("w.txt", tmp_path) == ["cat", "tabby cat", "dog"]
    assert words(str(tmp_path / "w.txt")) == ["cat", "tabby cat", "dog"]
    # an edited file is read again
    (tmp_path / "w.txt").write_text("bird\n")
    import os

    os.utime(tmp_path / "w.txt", ns=(10**18, 10**18))
    assert words("w.txt", tmp_path) == ["bird"]


def test_bad_word_lists(tmp_path):
    with pytest.raises(RecipeError, match="not a named list"):
        words("nope.txt", tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(RecipeError, match="no words") as e:
        words("empty.txt", tmp_path)
    assert "empty.txt" in str(e.value)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00cat")
    with pytest.raises(RecipeError, match="not UTF-8"):
        words("bin.txt", tmp_path)
