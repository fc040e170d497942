"""Browser steps the Playwright tests share."""
from __future__ import annotations

from typing import Any

from tests.testkit.data import PASSWORD


def open_worklist(page: Any) -> Any:
    """Go to the worklist through the nav; its case rows (a locator)."""
    page.click("nav >> text=Worklist")
    page.wait_for_selector("h1:has-text('Worklist')")
    return page.locator("table.worklist tbody tr")


def log_in(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the login form (going there unless already on it) and land on the home page."""
    if "/login/" not in page.url:
        page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}/")
