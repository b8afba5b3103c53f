"""The training panel and 01's explorer in a real browser: JupyterLab (and Notebook 7) on
127.0.0.1 in a temporary copy of the notebooks, fast mode, headless Debian chromium.

Train on a long run, Stop, twice in a row: the status must say "stopped at update k of T"
within a few seconds of the click, and the curves must appear. Skipped, saying why, where
chromium, chromedriver or selenium are missing (README: "The training panel").
Set WORKBOOK_UI_SCREENSHOT=docs/panel.png to save the panel's picture for the README.
"""
import os
import re
import time

import pytest

from jupyter_ui import JupyterServer, Page, browser, close_browser, missing_tools

REASON = missing_tools()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"browser test skipped: {REASON}")

STOP_LATENCY_S = 3.0
LONG = {"step": "5000", "n_cycles": "6"}          # 60,000 updates: minutes even in fast mode
STOPPED = re.compile(r"stopped at update ([\d,]+) of 60,000")
PROGRESS = re.compile(r"update ([\d,]+) of 60,000, elapsed \d+:\d\d, about [\d:?]+ left")


@pytest.fixture(scope="module")
def chrome():
    d = browser()
    yield d
    close_browser(d)


@pytest.fixture(scope="module")
def lab():
    srv = JupyterServer("lab")
    yield srv
    srv.close()


class PanelDriver:
    """The training panel on a page, through the CSS classes widgets.training_panel sets."""

    def __init__(self, page: Page):
        from selenium.webdriver.common.by import By
        self.page, self.d, self.By = page, page.driver, By
        self.root = page.wait(lambda: self.d.find_elements(By.CSS_SELECTOR, ".wb-training-panel"),
                              60, "the training panel to render")[0]

    def el(self, name: str):
        return self.root.find_element(self.By.CSS_SELECTOR, f".wb-panel-{name}")

    def text(self, name: str) -> str:
        return self.el(name).text

    def type(self, name: str, value: str) -> None:
        from selenium.webdriver.common.keys import Keys
        box = self.el(name).find_element(self.By.TAG_NAME, "input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value, Keys.ENTER)
        self.page.wait(lambda: box.get_attribute("value") == value, 5, f"{name} = {value}")

    def curves_shown(self) -> bool:
        img = self.el("curves")
        return img.is_displayed() and self.d.execute_script(
            "return arguments[0].naturalWidth;", img) > 100

    def train_and_stop(self, wait_for_curves: bool, linger: float = 0.0) -> tuple:
        """Train, wait for progress (and curves, then ``linger`` s more), Stop: (k stopped at,
        seconds Stop took)."""
        self.el("train").click()
        seen = set()

        def progressing():
            m = PROGRESS.search(self.text("status"))
            if m:
                seen.add(m.group(0))
            return len(seen) >= 2 and (not wait_for_curves or self.curves_shown())
        self.page.wait(progressing, 120, "progress text (and curves) during the run")
        time.sleep(linger)
        assert self.el("train").get_attribute("disabled") is not None, "Train on while training"
        t0 = time.monotonic()
        self.el("stop").click()
        m = self.page.wait(lambda: STOPPED.search(self.text("status")), 30, "'stopped at update'")
        latency = time.monotonic() - t0
        status = self.text("status")
        assert "not final" in status and "done" not in status, status
        self.page.wait(lambda: self.el("train").get_attribute("disabled") is None, 5,
                       "Train to be enabled again")
        return int(m.group(1).replace(",", "")), latency


def test_train_and_stop_twice_in_jupyterlab(chrome, lab):
    page = Page(chrome, lab, "03_architectures.ipynb")
    page.run(page.cell_index("widgets.training_panel("), above_too=True)
    p = PanelDriver(page)
    assert p.el("lam").find_element(p.By.TAG_NAME, "input").get_attribute("value") == "0.003"
    for name, value in LONG.items():
        p.type(name, value)
    page.wait(lambda: "60,000 updates" in p.text("estimate"), 30, "the estimate to follow")
    assert re.search(r"about [\d:]+ on this machine", p.text("estimate")), p.text("estimate")
    shot = os.environ.get("WORKBOOK_UI_SCREENSHOT")
    k1, lat1 = p.train_and_stop(wait_for_curves=True, linger=8.0 if shot else 0.0)
    assert p.curves_shown(), "the stopped run's curves are not shown"
    assert "lam=0.003," in p.text("settings"), p.text("settings")
    if shot:
        chrome.execute_script("arguments[0].scrollIntoView();", p.root)
        p.root.screenshot(shot)
    k2, lat2 = p.train_and_stop(wait_for_curves=False)
    print(f"JupyterLab: stopped at {k1} ({lat1:.2f} s after Stop), then at {k2} ({lat2:.2f} s)")
    assert 0 < k1 < 60000 and 0 < k2 < 60000
    assert lat1 < STOP_LATENCY_S and lat2 < STOP_LATENCY_S, (lat1, lat2)

    p.type("step", "19.9")
    page.wait(lambda: "refused" in p.text("estimate"), 10, "the estimate to refuse 19.9")
    p.el("train").click()
    page.wait(lambda: "not trained" in p.text("status"), 10, "'not trained'")
    assert "step" in p.text("status") and "19.9" in p.text("status"), p.text("status")
    assert not p.curves_shown(), "the old curves stayed under a refused setting"


def test_explorer_says_it_clamps_in_jupyterlab(chrome, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    page = Page(chrome, lab, "01_convolution.ipynb")
    page.run(page.cell_index("load_dataset()"))
    page.run(page.cell_index("@interact"))
    box = page.wait(lambda: chrome.find_elements(
        By.XPATH, "//div[contains(@class,'widget-text')][.//label[normalize-space()='nf']]//input"),
        60, "the explorer's nf field")[0]

    def body():
        text = chrome.find_element(By.TAG_NAME, "body").text
        assert "Traceback" not in text and "Error: " not in text, \
            "the explorer raised:\n" + text[text.find("Traceback"):][:1500]
        return text
    page.wait(lambda: "n_p=(32/f)^2=64" in body(), 60, "the explorer's first report")
    for value, needle in (("500", "clamped, showing nf=160"), ("4.5", "nf='4.5' refused")):
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value, Keys.ENTER)
        page.wait(lambda: needle in body(), 120, f"the explorer to say {needle!r}")


def test_train_and_stop_in_notebook7(chrome):
    srv = JupyterServer("notebook")
    try:
        page = Page(chrome, srv, "03_architectures.ipynb")
        page.run(page.cell_index("load_dataset()"))
        page.run(page.cell_index("widgets.training_panel("))
        p = PanelDriver(page)
        for name, value in LONG.items():
            p.type(name, value)
        page.wait(lambda: "60,000 updates" in p.text("estimate"), 30, "the estimate to follow")
        k1, lat1 = p.train_and_stop(wait_for_curves=False)
        k2, lat2 = p.train_and_stop(wait_for_curves=False)
        print(f"Notebook 7: stopped at {k1} ({lat1:.2f} s after Stop), then at {k2} ({lat2:.2f} s)")
        assert lat1 < STOP_LATENCY_S and lat2 < STOP_LATENCY_S, (lat1, lat2)
    finally:
        srv.close()
