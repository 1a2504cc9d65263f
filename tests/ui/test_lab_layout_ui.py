"""Browser tests of the Format Lab's card layout (``panel serve apps/explorer.py`` in Chromium, one server with
an empty store for the module).

At 1280 px wide: every radio group (MLS grouping, float NaN mode, MX scale, the sidebar's Data and Elements)
has its label just above it; the Bias, Frac and Block number boxes lie inside their cards and show their
whole value (clear of a spinner's arrows); a scaled format's codebook comes with the note under the codebook
plot saying that it is drawn in units of the format's scale while the histogram shows data values. At 1280
and 1400 px the spec box shows a whole MX spec. Screenshots: ``format-lab-radio-labels-1280``,
``format-lab-mx-spec-1280``, ``format-lab-number-boxes-1280``, ``format-lab-scale-note-1280``.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from .conftest import ARTIFACTS, deep_text, serve_explorer, settle, wait_until

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

#: the default MX spec (46 characters) and the widest one (48: a 4-digit block)
MX_SPECS = ("mx(elem=fp8_e4m3,block=32,axis=-1,scale=floor)", "mx(elem=fp6_e3m2,block=4096,axis=-1,scale=rceil)")
#: 1 px of rounding in the boxes' geometry
_EPS = 1.0


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One ``panel serve`` for the module (the Format Lab needs no stored run: an empty store)."""
    d = tmp_path_factory.mktemp("ui-lab-layout")
    with serve_explorer(d / "panel-serve.log", LOWBIT_STORE=str(d / "runs.sqlite")) as url:
        yield url


@pytest.fixture
def open_at(browser: Any) -> Iterator[Any]:
    """``open_at(url, width)``: a fresh context at ``width`` x 1000 px on the Format Lab, once card 1 shows its
    MLS spec and the first plots are drawn; closed after the test."""
    contexts: list[Any] = []

    def _open(url: str, width: int) -> Any:
        ctx = browser.new_context(viewport={"width": width, "height": 1000})
        contexts.append(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        page.goto(f"{url}?page=lab", timeout=120_000)
        page.wait_for_selector(".plot-codebook canvas", timeout=120_000)
        wait_until(lambda: page.evaluate("() => window.Bokeh !== undefined && window.Bokeh.documents.length > 0"),
                   message="Bokeh document")
        spec = page.locator(".spec-builder").first.locator(".spec-input input")
        wait_until(lambda: spec.input_value().startswith("mls(ex=2,mx=1"), timeout=60, message="MLS spec in card 1")
        return page

    yield _open
    for ctx in contexts:
        ctx.close()


def _shot(page: Any, name: str, clip: dict[str, float] | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=clip is not None, clip=clip)


def _three_cards(page: Any) -> None:
    """Formats = 3 (the Formats slider is the page's first)."""
    handle = page.locator(".format-lab .noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    wait_until(lambda: page.locator(".spec-builder").nth(2).is_visible(), message="three cards")


def _set_spec(page: Any, i: int, spec: str) -> Any:
    """Type ``spec`` (canonical) into card ``i``'s spec box; returns the card once the metrics table shows it
    (the spec is in effect and its knobs are drawn)."""
    card = page.locator(".spec-builder").nth(i)
    box = card.locator(".spec-input input")
    box.fill(spec)
    box.press("Enter")
    wait_until(lambda: box.input_value() == spec, message=f"{spec} in card {i + 1}")
    wait_until(lambda: spec in deep_text(page.locator(".metrics-table")), timeout=60, message=f"{spec} computed")
    assert not card.locator(".spec-error").is_visible(), deep_text(card.locator(".spec-error"))
    return card


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (inner["x"] >= outer["x"] - _EPS and inner["y"] >= outer["y"] - _EPS
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + _EPS
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + _EPS)


def _box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"{locator} is not rendered"
    return box


# ----------------------------------------------------------------- 1. radio groups carry labels
def _label_above(scope: Any, label: str, option: str) -> tuple[dict[str, float], dict[str, float]]:
    """The boxes of the radio group (``.bk-btn-group`` with a button ``option``) and of the visible text
    ``label`` just above it, left-aligned with it; fails when there is no such label."""
    group = scope.locator(".bk-btn-group").filter(has=scope.page.get_by_role("button", name=option, exact=True))
    wait_until(lambda: group.count() == 1 and group.is_visible(), message=f"the radio group with {option!r}")
    g = _box(group)
    texts = scope.get_by_text(label, exact=True)
    found = []
    for k in range(texts.count()):
        t = texts.nth(k)
        b = t.bounding_box()
        if b is None or not t.is_visible() or b["width"] < 5 or b["height"] < 5:
            continue
        gap = g["y"] - (b["y"] + b["height"])
        found.append((gap, abs(b["x"] - g["x"]), b))
        if -_EPS <= gap <= 16 and abs(b["x"] - g["x"]) <= 20 and b["x"] < g["x"] + g["width"]:
            return g, b
    raise AssertionError(f"no label {label!r} just above the radio group of {option!r} at {g}: "
                         f"(gap, x offset, box) of the texts {label!r}: {found}")


def test_radio_groups_have_visible_labels(lab_url: str, open_at: Any) -> None:
    """The grouping (MLS), NaN mode (float) and scale (MX) radio groups of the cards and the sidebar's Data and
    Elements groups each show their label right above them at 1280 px."""
    page = open_at(lab_url, 1280)
    _three_cards(page)
    cards = page.locator(".spec-builder")
    wait_until(lambda: cards.nth(1).locator(".spec-input input").input_value() == "fp8_e4m3", message="fp8 card 2")
    _set_spec(page, 2, MX_SPECS[0])
    settle(page)
    checks = [(cards.nth(0), "Group", "nc"), (cards.nth(1), "Nan", "fn"), (cards.nth(2), "Scale", "rceil"),
              (page.locator(".lab-sidebar"), "Data", "synthetic"), (page.locator(".lab-sidebar"), "Elements", "16K")]
    boxes = [_label_above(scope, label, option) for scope, label, option in checks]
    for (scope, label, _), (g, b) in zip(checks, boxes):
        owner = _box(scope)
        assert _inside(b, owner) and _inside(g, owner), (label, b, g, owner)  # in its card / the sidebar
        assert b["width"] >= 15, (label, b)  # rendered text, not an empty box
    _shot(page, "format-lab-radio-labels-1280")
    assert page.errors == []


# ----------------------------------------------------------------- 2. the spec box fits an MX spec
@pytest.mark.parametrize("width", [1280, 1400])
def test_spec_box_shows_a_whole_mx_spec(lab_url: str, open_at: Any, width: int) -> None:
    page = open_at(lab_url, width)
    for spec in MX_SPECS:
        card = _set_spec(page, 0, spec)
        box = card.locator(".spec-input input")
        # whole text visible: nothing to scroll to inside the box, and the box inside its card
        wait_until(lambda: box.evaluate("(e) => e.scrollWidth <= e.clientWidth && e.clientWidth > 100"),
                   timeout=10, message=f"{spec} fitting the spec box at {width} px "
                   f"(scrollWidth, clientWidth: {box.evaluate('(e) => [e.scrollWidth, e.clientWidth]')})")
        assert _inside(_box(box), _box(card))
    # the small font's underscores are drawn (a line box too short for the font would cut them off): the box
    # looks different with each "_" as a space (the value set in the page alone: no event reaches the server)
    box.evaluate("(e) => e.blur()")
    if width == 1280:
        _shot(page, "format-lab-mx-spec-1280")
    show = "(e, v) => { e.value = v; e.scrollLeft = 0; }"
    box.evaluate(show, MX_SPECS[-1])
    shown = box.screenshot()
    box.evaluate(show, MX_SPECS[-1].replace("_", " "))
    differs = box.screenshot() != shown
    assert differs, "the spec box draws no underscores"
    box.evaluate(show, MX_SPECS[-1])
    assert page.errors == []


# ----------------------------------------------------------------- 3. number boxes are not clipped
# The text area left for the value in an input (page px, from its left edge): [text start, text end], text
# end clear of a spinner's arrow buttons; and the width of its value in its own font.
_VALUE_FIT_JS = """(e) => {
  const c = getComputedStyle(e), r = e.getBoundingClientRect();
  const start = r.left + parseFloat(c.borderLeftWidth) + parseFloat(c.paddingLeft);
  let end = r.right - parseFloat(c.borderRightWidth) - parseFloat(c.paddingRight);
  const wrap = e.parentNode;
  for (const b of wrap ? wrap.querySelectorAll('button, .bk-spin-btn') : []) {
    const br = b.getBoundingClientRect();
    if (br.width > 0 && br.left < r.right && br.right > r.left) end = Math.min(end, br.left);
  }
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = c.font;
  return {start, end, text: ctx.measureText(e.value).width, value: e.value,
          scroll: e.scrollWidth, client: e.clientWidth};
}"""

#: (card, spec, knob label, value shown): the widest values the knobs take (Frac -64..64, Block up to 4096)
#: (specs in canonical form: the form the box and the metrics table show)
NUMBER_BOXES = ((0, "fixed(bits=8,frac=-64)", "Frac", "-64"),
                (1, "float(e=4,m=3,bias=-100,inf=true,nan=ieee,subnormals=true,saturate=true)", "Bias", "-100"),
                (2, "mx(elem=fp8_e4m3,block=4096,axis=-1,scale=floor)", "Block", "4096"))


def test_bias_frac_block_boxes_fit_their_cards(lab_url: str, open_at: Any) -> None:
    page = open_at(lab_url, 1280)
    _three_cards(page)
    found = []
    for i, spec, label, value in NUMBER_BOXES:
        card = _set_spec(page, i, spec)
        group = card.locator(".knobs .bk-input-group").filter(has_text=label)
        wait_until(lambda: group.count() == 1 and group.locator("input").input_value() == value,
                   message=f"the {label} box showing {value}")
        found.append((card, group, label))
    settle(page)
    for card, group, label in found:
        inp = group.locator("input")
        box, whole = _box(inp), _box(group)  # the input, and with its label and spinner arrows
        for outer in (_box(card), _box(card.locator(".knobs"))):
            assert _inside(box, outer) and _inside(whole, outer), (label, box, whole, outer)
        fit = inp.evaluate(_VALUE_FIT_JS)
        assert fit["scroll"] <= fit["client"], (label, fit)
        assert fit["start"] + fit["text"] <= fit["end"], (label, fit)  # the value clear of the arrows
        assert fit["end"] - fit["start"] >= 40, (label, fit)  # room for more than a digit or two
    _shot(page, "format-lab-number-boxes-1280")
    assert page.errors == []


# ----------------------------------------------------------------- 4. the codebook's scale note
def test_scaled_codebook_note_explains_units(lab_url: str, open_at: Any) -> None:
    """No note while no shown format is scaled; an MX format in card 1 and a scaled fp8 in card 2 bring the note
    under the codebook plot, naming them: element values in units of the scale, the histogram in data values."""
    page = open_at(lab_url, 1280)
    note = page.locator(".codebook-note")
    text = note.locator(".scale-note-text")
    # mls (card 1) is scaled: the note names it
    wait_until(lambda: text.count() == 1 and text.is_visible() and "Format 1 is scaled" in deep_text(note),
               timeout=60, message="the note for the MLS format")
    _set_spec(page, 0, "fp8_e5m2")  # two unscaled formats: no note
    wait_until(lambda: text.count() == 0 and deep_text(note) == "", message="no note without a scaled format")
    _set_spec(page, 0, MX_SPECS[0])
    wait_until(lambda: text.count() == 1 and text.is_visible(), message="the note for the MX format")
    said = deep_text(note)
    assert "Format 1 is scaled" in said and "Format 2" not in said, said
    assert "element values" in said and "units of the scale" in said and "data values" in said, said
    _set_spec(page, 1, "scaled(elem=fp8_e4m3,block=tensor,axis=-1,scale=fp32)")  # a scaled fp8
    wait_until(lambda: "Formats 1, 2 are scaled" in deep_text(note), message="the note naming both formats")
    settle(page)
    # under the codebook plot, in its column, wholly shown (not cut by the pane nor under the next plot)
    plot, n, t = _box(page.locator(".plot-codebook")), _box(note), _box(text)
    below = _box(page.locator(".plot-error"))
    assert n["y"] >= plot["y"] + plot["height"] - _EPS and n["x"] >= plot["x"] - _EPS, (n, plot)
    assert n["x"] + n["width"] <= plot["x"] + plot["width"] + _EPS, (n, plot)
    assert _inside(t, n) and t["y"] + t["height"] <= below["y"] + _EPS, (t, n, below)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    _shot(page, "format-lab-scale-note-1280",
          clip={"x": plot["x"], "y": plot["y"], "width": plot["width"], "height": n["y"] + n["height"] - plot["y"]})
    assert page.errors == []
