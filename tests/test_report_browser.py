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
from test_report_content import CELL, tiny_main_once

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
    """Images, tables (as header rows and body rows of cell texts), headings and links."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.tables = 0
        self.scripts = 0
        self.links: list[str] = []
        self.grid: list[dict] = []  # per table: {"head": [[...]], "body": [[...]]}
        self.ids: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._part = "body"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table":
            self.tables += 1
            self.grid.append({"head": [], "body": []})
        elif tag == "script":
            self.scripts += 1
        elif tag in ("link", "a") and a.get("href"):
            self.links.append(a["href"])
        elif tag in ("thead", "tbody"):
            self._part = "head" if tag == "thead" else "body"
        elif tag == "tr" and self.grid:
            self.grid[-1][self._part].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.grid:
            self.grid[-1][self._part][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


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


def test_main_job_report_shows_n_intervals_settings_examples_provenance(tmp_path_factory,
                                                                       tmp_path):
    """Acceptance: the report of a (tiny, synthetic) main-job-like run, as Chromium renders
    it, gives n and a 95% interval for every accuracy, the attack settings under the column
    labels, the example-image and UAP figures and the provenance section."""
    index = tiny_main_once(tmp_path_factory) / "report" / "index.html"
    res = chromium(["--dump-dom"], tmp_path / "p3", index.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = DomSummary()
    dom.feed(res.stdout)
    accuracy_tables = 0
    for table in dom.grid:
        labels = table["head"][0] if table["head"] else []
        cols = [i for i, h in enumerate(labels) if h.endswith("%") and h != "disagree %"]
        if not cols:
            continue
        accuracy_tables += 1
        for row in table["body"]:
            for i in cols:
                assert CELL.match(row[i]), (labels[i], row[i])
        attack_cols = [i for i in cols if labels[i].split()[0] in ("WB", "transfer", "UAP")]
        assert len(table["head"]) == 2  # the settings row under the labels
        for i in attack_cols:
            settings = table["head"][1][i]
            assert settings.startswith("eps ") and "norm linf" in settings, settings
            if labels[i].startswith("WB pgd"):
                assert "steps 3" in settings and "restarts 1" in settings and "alpha" in settings
    assert accuracy_tables >= 2  # the summary and the members' table
    text = " ".join(dom.text)
    assert "weighted = 0.5 * clean" in text and "Wilson" in text
    for fig in ("figures/examples.png", "figures/uap.png"):
        assert fig in dom.imgs and (index.parent / fig).read_bytes()[:8] == PNG_SIGNATURE
    assert "examples" in dom.ids and "provenance" in dom.ids
    for fact in ("robens run", "config hash", "training seed", "torch", "CPUs", "Wall times"):
        assert fact in text, fact
