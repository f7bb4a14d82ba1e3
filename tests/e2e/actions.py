"""Browser actions the e2e tests share."""

from __future__ import annotations

from playwright.sync_api import Locator, Page


def choose(page: Page, opener: Locator, option: str, tries: int = 4) -> None:
    """Pick `option` from a Streamlit selectbox.

    A rerun that lands between the click that opens the list and the click on the option re-renders the
    select and closes its list; a user would simply open it again, and so does this.
    """
    for attempt in range(tries):
        opener.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            return
        except Exception:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
