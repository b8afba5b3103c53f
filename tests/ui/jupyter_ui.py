"""A Jupyter server and a headless Chromium for the browser tests (not a test file).

JupyterServer starts JupyterLab or Notebook 7 on 127.0.0.1 (a free port, a random token) in a
temporary copy of the notebooks, with WORKBOOK_FAST=1 and every Jupyter/IPython state folder in
the same temporary folder; ``close()`` ends its process group (the server and its kernels) by
process id and removes the folder. ``browser()`` starts Debian's chromium through its
chromedriver; ``Page`` drives a notebook through JupyterLab's own commands (the app is exposed
to the page with expose_app_in_browser).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
INSTALL = ("install them with: apt-get install -y chromium chromium-driver && "
           ".venv/bin/pip install selenium (or run .ci/run), then make ui-test")


def missing_tools() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed; {INSTALL}"
    if not any(shutil.which(c) for c in CHROMIUM):
        return f"no chromium browser found; {INSTALL}"
    if not shutil.which("chromedriver"):
        return f"no chromedriver found; {INSTALL}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """app: 'lab' (JupyterLab) or 'notebook' (Notebook 7)."""

    def __init__(self, app: str = "lab", timeout: float = 90.0, source: Path = ROOT / "notebooks"):
        if app not in ("lab", "notebook"):
            raise ValueError(f"app must be 'lab' or 'notebook'; got {app!r}")
        self.app, self.port, self.token = app, free_port(), secrets.token_hex(16)
        self.dir = Path(tempfile.mkdtemp(prefix="wb-ui-"))
        shutil.copytree(source, self.dir / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        env = dict(os.environ, WORKBOOK_FAST="1", WORKBOOK_PROGRESS="0", MPLBACKEND="Agg",
                   JUPYTER_CONFIG_DIR=str(self.dir / "cfg"),
                   JUPYTER_DATA_DIR=str(self.dir / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.dir / "run"), IPYTHONDIR=str(self.dir / "ipy"),
                   JUPYTERLAB_SETTINGS_DIR=str(self.dir / "lab-settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(self.dir / "lab-ws"), JUPYTER_PLATFORM_DIRS="1")
        env.pop("JUPYTER_PATH", None)
        news = self.dir / "lab-settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)                   # no "news?" pop-up over the panel
        (news / "notification.jupyterlab-settings").write_text(
            '{"fetchNews": "false", "checkForUpdates": false}')
        module, cls = (("jupyterlab", "LabApp") if app == "lab"
                       else ("notebook", "JupyterNotebookApp"))
        cmd = [sys.executable, "-m", module, "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--port-retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.dir}", f"--{cls}.expose_app_in_browser=True",
               "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")             # CI containers run as root
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait(timeout)
        except BaseException as e:
            log = self.log_text()
            self.close()
            raise RuntimeError(f"{e}; its log:\n{log}") from None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        path = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.base}/{path}/notebooks/{notebook}?token={self.token}"

    def _wait(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Jupyter server exited ({self.proc.returncode})")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}",
                                            timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the Jupyter server did not answer in {timeout:.0f} s")

    def log_text(self) -> str:
        self.log.flush()
        return (self.dir / "server.log").read_text(errors="replace")[-4000:]

    def close(self) -> None:
        """End the server's process group (server and kernels) by its id; remove the folder."""
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            try:                                   # kernels left in the group
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        finally:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def browser(width: int = 1400, height: int = 1100):
    """A headless chromium (selenium WebDriver) with a temporary profile. quit() ends it; the
    driver's service process is ended by its id too (see close_browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = next(shutil.which(c) for c in CHROMIUM if shutil.which(c))
    profile = tempfile.mkdtemp(prefix="wb-ui-chrome-")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", f"--user-data-dir={profile}",
              "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    service = Service(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.wb_profile = profile
    return driver


def close_browser(driver) -> None:
    try:
        driver.quit()
    finally:
        proc = getattr(getattr(driver, "service", None), "process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
        shutil.rmtree(getattr(driver, "wb_profile", ""), ignore_errors=True)


_READY = """
const [name, done] = arguments;
window.__wbNotebook = () => window.jupyterapp && Array.from(window.jupyterapp.shell.widgets('main'))
  .find(w => w.context && w.sessionContext && w.context.path.endsWith(name));
(async () => {
  const t0 = Date.now();
  while (!(window.jupyterapp && window.__wbNotebook())) {
    if (Date.now() - t0 > 60000) { done('no notebook'); return; }
    await new Promise(r => setTimeout(r, 200));
  }
  const nb = window.__wbNotebook();
  await nb.context.ready; await nb.sessionContext.ready;
  while (!nb.sessionContext.session || !nb.sessionContext.session.kernel ||
         nb.sessionContext.session.kernel.status !== 'idle') {
    if (Date.now() - t0 > 90000) { done('kernel not idle'); return; }
    await new Promise(r => setTimeout(r, 200));
  }
  done('ok');
})().catch(e => done('error: ' + e));
"""

_RUN = """
const [index, aboveToo] = arguments;
window.__wb_run = null;
(async () => {
  const app = window.jupyterapp, nb = window.__wbNotebook();
  app.shell.activateById(nb.id);
  nb.content.activeCellIndex = index;
  if (aboveToo) { await app.commands.execute('notebook:run-all-above'); }
  nb.content.activeCellIndex = index;
  await app.commands.execute('notebook:run-cell');
  return 'ok';
})().then(v => { window.__wb_run = v; }, e => { window.__wb_run = 'error: ' + e; });
"""


class Page:
    """A notebook open in the browser."""

    def __init__(self, driver, server: JupyterServer, notebook: str):
        self.driver, self.server = driver, server
        driver.set_script_timeout(180)
        driver.get(server.url(notebook))
        res = driver.execute_async_script(_READY, notebook)
        assert res == "ok", f"{notebook} did not open: {res}\n{server.log_text()}"

    def cell_index(self, needle: str) -> int:
        i = self.driver.execute_script(
            "return window.__wbNotebook().content.widgets.findIndex("
            "c => c.model.sharedModel.getSource().includes(arguments[0]));", needle)
        assert i >= 0, f"no cell contains {needle!r}"
        return i

    def run(self, index: int, above_too: bool = False, timeout: float = 600) -> None:
        """Run cell ``index`` (and every cell above it first); return when they have run."""
        self.driver.execute_script(_RUN, index, above_too)
        res = self.wait(lambda: self.driver.execute_script("return window.__wb_run;"), timeout,
                        f"cell {index} to run", every=0.5)
        assert res == "ok", f"running cell {index}: {res}"
        self.wait(lambda: not self.kernel_busy(), timeout, "the kernel to be idle", every=0.5)
        errors = self.errors()
        assert not errors, f"cells raised: {errors}"

    def kernel_busy(self) -> bool:
        return self.driver.execute_script(
            "const s = window.__wbNotebook().sessionContext.session;"
            "return !s || !s.kernel || s.kernel.status !== 'idle';")

    def errors(self) -> list:
        """[(cell index, 'Name: message'), ...] of the cells whose output is an error."""
        return self.driver.execute_script("""
            const out = [];
            window.__wbNotebook().content.widgets.forEach((c, i) => {
              if (c.model.type !== 'code') return;
              for (const o of c.model.outputs.toJSON())
                if (o.output_type === 'error') out.push([i, o.ename + ': ' + o.evalue]);
            });
            return out;""")

    def wait(self, cond, timeout: float, what: str, every: float = 0.05):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = cond()
            if v:
                return v
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
