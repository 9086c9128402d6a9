"""workbench.io.progress: one factory for bool / callable progress."""
import io

from workbench.io.progress import CallbackBar, Silent, progress_bar


def test_a_callable_gets_done_and_total():
    seen = []
    bar = progress_bar(lambda d, t: seen.append((d, t)), 10, "x")
    assert isinstance(bar, CallbackBar)
    bar.update(3)
    bar.update()
    bar.close()
    assert seen == [(0, 10), (3, 10), (4, 10)]


def test_initial_counts_resumed_work():
    seen = []
    progress_bar(lambda d, t: seen.append((d, t)), 10, "x", initial=6)
    assert seen == [(0, 10), (6, 10)]


def test_off_is_silent_and_on_is_a_text_bar():
    for off in (False, None, 0):
        bar = progress_bar(off, 5, "x")
        assert isinstance(bar, Silent)
        bar.update(2)
        bar.close()
    out = io.StringIO()
    bar = progress_bar(True, 5, "writing", unit="row", file=out)
    bar.update(5)
    bar.close()
    assert "writing" in out.getvalue()


def test_stage_bars_show_one_bar_per_stage_and_finish_each():
    import io

    from workbench.io.progress import StageBars, stage_progress

    buf = io.StringIO()
    bars = StageBars(file=buf)
    for stage, fraction in (("sample", 0.0), ("sample", 1.0), ("umap", None), ("place", 0.5), ("place", 1.0)):
        bars(stage, fraction)
    bars.close()
    text = buf.getvalue()
    assert "sample: 100%" in text and "umap: 100%" in text and "place:  50%" in text and "place: 100%" in text
    assert stage_progress(None) is None and stage_progress(False) is None
    fn = lambda stage, fraction=None: None  # noqa: E731
    assert stage_progress(fn) is fn and isinstance(stage_progress(True), StageBars)
