"""Browser test of an unusable run store: ``panel serve apps/explorer.py`` with ``LOWBIT_STORE`` pointing at a
damaged copy of a real store shows the reason on the page (a danger alert, no tabs), not a blank page."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from corrupt_store import corrupt_copy, make_real_store

from .conftest import deep_text, screenshot, serve_explorer, wait_until

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def corrupt_explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The Explorer served on a garbled store: yields ``{"url", "store"}``."""
    d = tmp_path_factory.mktemp("ui-corrupt")
    bad = corrupt_copy(make_real_store(d / "good.sqlite"), d / "runs.sqlite", "garbled")
    with serve_explorer(d / "panel-serve.log", LOWBIT_STORE=str(bad)) as url:
        yield {"url": url, "store": bad}


def test_a_damaged_store_shows_its_reason_on_the_page(corrupt_explorer: dict[str, Any], page: Any) -> None:
    bad: Path = corrupt_explorer["store"]
    page.goto(corrupt_explorer["url"])
    alert = page.locator(".store-error")
    wait_until(lambda: alert.count() and "is corrupt" in deep_text(alert), timeout=60,
               message="the store-error alert")
    text = deep_text(alert)
    assert "The run store cannot be used." in text
    assert f"run store {bad} is corrupt: " in text and "malformed" in text, text
    assert "LOWBIT_STORE" in text  # what to do about it
    assert page.locator(".bk-tab").count() == 0  # the alert instead of the tabs
    assert page.console_log.errors() == []
    screenshot(page, "store-error")
