"""The HTML report renders in headless Chromium without console errors, with its figures
(img tags whose files exist) and tables; a screenshot is taken. Skipped without Chromium
(Debian's ``chromium`` package; CI installs it)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from test_report import PNG_SIGNATURE, write_fake_runs

from robens.report import build_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def chromium(args: list[str], profile: Path, url: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *args, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


class DomSummary(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.tables = 0
        self.scripts = 0
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table":
            self.tables += 1
        elif tag == "script":
            self.scripts += 1
        elif tag in ("link", "a") and a.get("href"):
            self.links.append(a["href"])


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    return build_report(write_fake_runs(root), root / "report")


def test_report_renders_without_console_errors(index, tmp_path):
    url = index.resolve().as_uri()
    res = chromium(["--enable-logging=stderr", "--v=0", "--dump-dom"], tmp_path / "p1", url)
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line
               or "Uncaught" in line]
    assert console == [], console
    dom = DomSummary()
    dom.feed(res.stdout)
    assert dom.tables >= 3 and dom.scripts == 0
    assert len(dom.imgs) >= 8
    for src in dom.imgs:
        path = index.parent / src
        assert path.is_file(), src
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert all(h.startswith(("data:", "figures/", "#")) for h in dom.links), dom.links


def test_report_screenshot(index, tmp_path):
    shot = tmp_path / "shot.png"
    res = chromium([f"--screenshot={shot}", "--window-size=1280,2000"], tmp_path / "p2",
                   index.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(shot)
    assert img.shape[:2] == (2000, 1280)
    assert img.std() > 0.05  # not a blank page
