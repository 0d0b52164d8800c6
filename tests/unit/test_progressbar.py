"""Progress bars that end as one summary line (workbench.core.progressbar)."""

import io

import pytest

from workbench.core import progressbar
from workbench.core.progressbar import ProgressBar


def test_quiet_mode_prints_only_the_summary():
    out = io.StringIO()
    bar = ProgressBar(10, "fine-tune", unit="step", mode="quiet", stream=out)
    bar.update(4, loss=1.23456)
    bar.update(6, loss=0.5, accuracy=0.75)
    text = bar.close()
    assert out.getvalue() == text + "\n"
    assert text.startswith("fine-tune: 10 steps in ")
    assert text.endswith("; loss 0.500, accuracy 0.750")
    assert bar.close() == bar.summary() and out.getvalue().count("\n") == 1, "closed once"


def test_an_unfinished_bar_says_how_far_it_got():
    bar = ProgressBar(800, "distil", unit="batch", mode="quiet", stream=io.StringIO())
    bar.update(3)
    assert bar.summary().startswith("distil: 3 of 800 batches in ")


@pytest.mark.parametrize(("unit", "many"), [("step", "steps"), ("batch", "batches")])
def test_plural(unit, many):
    assert progressbar.plural(unit) == many


def test_in_a_kernel_the_bar_is_replaced_by_its_summary(monkeypatch):
    """One display, updated in place: a saved notebook keeps the summary only."""
    from IPython import display as ipy_display

    updates = []

    class Handle:
        def update(self, obj):
            updates.append(obj.data)

    shown = []

    def fake_display(obj, display_id=False):
        shown.append(obj.data)
        return Handle()

    monkeypatch.setattr(ipy_display, "display", fake_display)
    monkeypatch.setattr(progressbar, "REDRAW_S", 0.0)
    bar = ProgressBar(5, "epoch 1/3", unit="batch", mode="display")
    bar.update(2)
    text = bar.close(loss=0.25)
    assert len(shown) == 1 and "epoch 1/3" in shown[0] and "0/5" in shown[0]
    assert "2/5" in updates[0], "the bar moves in place while it runs"
    assert updates[-1] == text and text.startswith("epoch 1/3: 2 of 5 batches in ")


def test_a_terminal_bar_is_cleared_then_summarised():
    err, out = io.StringIO(), io.StringIO()
    bar = ProgressBar(3, "variants", unit="variant", mode="terminal", stream=err)
    bar.update(3)
    bar._tqdm.fp = err  # tqdm writes its frames and the clearing to the same stream
    bar.close()
    assert err.getvalue().rstrip("\n").splitlines()[-1].startswith("variants: 3 variants in ")
    assert out.getvalue() == ""


def test_track_yields_everything_and_summarises_once(capsys):
    seen = list(progressbar.track(range(4), desc="cut points", unit="cut"))
    assert seen == [0, 1, 2, 3]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("cut points: 4 cuts in ")


def test_track_says_how_far_it_got_when_stopped_early(capsys):
    gen = progressbar.track([1, 2, 3], desc="variants", unit="variant")
    assert next(gen) == 1 and next(gen) == 2
    gen.close()  # a break in the caller's loop
    assert capsys.readouterr().out.startswith("variants: 1 of 3 variants in ")


def test_a_disabled_track_prints_nothing(capsys):
    assert list(progressbar.track("ab", desc="x", disable=True)) == ["a", "b"]
    assert capsys.readouterr().out == ""
