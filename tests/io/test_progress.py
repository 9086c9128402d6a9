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
