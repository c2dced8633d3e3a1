"""The book as readers see it: every page in headless Chromium, and the margin explorer.

The browser tests build the book from the smoke run, serve it on 127.0.0.1 and drive the system
Chromium over the DevTools protocol (``websocket-client``, no browser download). A page fails on
a JavaScript console error, a failed request, any request that leaves 127.0.0.1, an image that
did not load, TeX left unrendered, or an empty output where its notebook shows a figure or a
table. Screenshots (1280×800) go to ``build/screenshots/``. Without Chromium those tests skip;
the explorer's generator and its JavaScript (under node, where present) are tested without it.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import math
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import numpy as np
import pytest
import torch

from arclab.book import widgets
from arclab.book.notebook import repo_root
from arclab.book.runner import build_book, notebook_paths
from arclab.losses.geometry import angular_margin_deg, decision_boundary_deg
from arclab.losses.margins import PRESETS, target_logit

ROOT = repo_root()
SCREENSHOTS = ROOT / "build" / "screenshots"
ASSET_JS = Path(widgets.__file__).parent / "assets" / "margin_explorer.js"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                 "google-chrome"))), None)
NODE = shutil.which("node")


# --- the library's values, the reference every drawn number is compared with -----------------

def library_values(theta_deg, m1, m2, m3, s, overflow):
    """(target logit × s, class 1 boundary in degrees) at the angles, by arclab itself."""
    theta = torch.tensor(theta_deg, dtype=torch.float64)
    logit = s * target_logit(torch.cos(torch.deg2rad(theta)), m1=m1, m2=m2, m3=m3,
                             overflow=overflow)
    boundary = decision_boundary_deg(theta, m1=m1, m2=m2, m3=m3, overflow=overflow)
    return logit.numpy(), boundary.numpy()


# --- the generator, without a browser ----------------------------------------------------------

class _Explorer(HTMLParser):
    """Collects the root's attributes, the inputs and the value rows of an explorer fragment."""

    def __init__(self):
        super().__init__()
        self.root, self.inputs, self.rows, self.options, self.urls = None, {}, [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if "arclab-mx" in (a.get("class") or "").split():
            self.root = a
        elif tag == "input":
            self.inputs[a["name"]] = a
        elif tag == "option":
            self.options.append((a["value"], "selected" in a))
        elif tag == "tr" and "data-theta-deg" in a:
            self.rows.append([float(a[k]) for k in ("data-theta-deg", "data-logit",
                                                    "data-boundary-deg")])


def parse_explorer(fragment: str) -> _Explorer:
    parser = _Explorer()
    parser.feed(fragment)
    return parser


def test_explorer_starts_with_the_arcface_curve_worked_by_hand():
    page = parse_explorer(widgets.margin_explorer_html(m2=0.5, s=64.0, points=181))
    theta, logit, boundary = np.array(page.rows).T
    np.testing.assert_allclose(theta, np.linspace(0, 180, 181))
    star = math.degrees(math.pi - 0.5)  # θ* = 151.35°: past it, cos θ shifted to meet the curve
    before = theta <= star
    np.testing.assert_allclose(logit[before], 64 * np.cos(np.radians(theta[before]) + 0.5),
                               atol=1e-9)
    delta = math.cos(math.pi - 0.5) + 1
    np.testing.assert_allclose(logit[~before], 64 * (np.cos(np.radians(theta[~before])) - delta),
                               atol=1e-9)
    inside = theta + math.degrees(0.5) < 180  # ArcFace's margin is a constant 28.65°
    np.testing.assert_allclose(boundary[inside] - theta[inside], math.degrees(0.5), atol=1e-6)
    assert np.all(boundary[~inside] == 180.0)


@pytest.mark.parametrize("overflow", ["raw", "easy", "monotonic"])
def test_explorer_embeds_cosface_values_for_each_policy(overflow):
    page = parse_explorer(widgets.margin_explorer_html(m2=0.0, m3=0.35, s=30.0,
                                                       overflow=overflow, points=91))
    theta, logit, boundary = np.array(page.rows).T
    cos = np.cos(np.radians(theta))
    expected = cos - 0.35  # CosFace never passes θ*, so raw and monotonic agree
    if overflow == "easy":
        expected = np.where(cos > 0, expected, cos)
    np.testing.assert_allclose(logit, 30 * expected, atol=1e-9)
    np.testing.assert_allclose(boundary, np.degrees(np.arccos(np.clip(expected, -1, 1))),
                               atol=1e-6)
    assert [v for v, chosen in page.options if chosen] == [overflow]
    assert [v for v, _ in page.options] == ["monotonic", "raw", "easy"]


def test_explorer_config_sliders_and_no_outside_urls():
    fragment = widgets.margin_explorer_html(1.35, 0.3, 0.2, 16.0, references=("normface",
                                            "cm2"), element_id="mx-test")
    page = parse_explorer(fragment)
    assert page.root["id"] == "mx-test"
    config = json.loads(page.root["data-config"])
    assert config["initial"] == {"m1": 1.35, "m2": 0.3, "m3": 0.2, "s": 16.0,
                                 "overflow": "monotonic"}
    assert [(r["name"], r["m1"], r["m2"], r["m3"], r["label"]) for r in config["references"]] \
        == [(k, PRESETS[k].m1, PRESETS[k].m2, PRESETS[k].m3, PRESETS[k].label)
            for k in ("normface", "cm2")]
    for name, (lo, hi, step) in widgets.EXPLORER_SLIDERS.items():
        attrs = page.inputs[name]
        assert (float(attrs["min"]), float(attrs["max"]), float(attrs["step"])) == (lo, hi, step)
    assert [float(page.inputs[k]["value"]) for k in ("m1", "m2", "m3", "s")] == [1.35, 0.3,
                                                                                0.2, 16.0]
    assert page.urls == []  # nothing to fetch: CSS and script are inline
    assert "://" not in fragment.replace("http://www.w3.org/2000/svg", "")
    assert ASSET_JS.read_text() in fragment
    other = parse_explorer(widgets.margin_explorer_html())
    assert other.root["id"] != parse_explorer(widgets.margin_explorer_html()).root["id"]


@pytest.mark.parametrize("kwargs, match", [
    ({"m2": 0.37}, "m2 must be in"), ({"m1": 3.0}, "m1 must be in"), ({"s": 0.0}, "s must be"),
    ({"m3": float("nan")}, "m3 must be a finite"), ({"overflow": "clip"}, "overflow must be"),
    ({"references": ("softmax",)}, "references"), ({"points": 5}, "points"),
])
def test_explorer_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        widgets.margin_explorer_html(**kwargs)


@pytest.mark.skipif(NODE is None, reason="node is not installed: the script's numbers are "
                    "checked in the browser test instead")
def test_explorer_script_computes_what_the_library_computes():
    rng = random.Random(0)
    settings = [(1.0, 0.5, 0.0, 64.0, "monotonic"), (1.35, 0.0, 0.0, 10.0, "raw"),
                (2.0, 1.5, 0.6, 128.0, "monotonic"), (0.5, 0.0, 0.35, 1.0, "easy")]
    settings += [(rng.choice(np.arange(0.5, 2.01, 0.05)).round(2),
                  rng.choice(np.arange(0, 1.51, 0.05)).round(2),
                  rng.choice(np.arange(0, 0.61, 0.05)).round(2), float(rng.randint(1, 128)),
                  rng.choice(["raw", "easy", "monotonic"])) for _ in range(12)]
    script = ("const mx = require(process.argv[1]);"
              "const out = JSON.parse(process.argv[2]).map(p => mx.compute("
              "{m1: p[0], m2: p[1], m3: p[2], s: p[3], overflow: p[4]}, 73));"
              "console.log(JSON.stringify(out));")
    proc = subprocess.run([NODE, "-e", script, str(ASSET_JS), json.dumps(settings, default=float)],
                          capture_output=True, text=True, timeout=60, check=True)
    for (m1, m2, m3, s, overflow), d in zip(settings, json.loads(proc.stdout)):
        logit, boundary = library_values(d["thetaDeg"], m1, m2, m3, s, overflow)
        np.testing.assert_allclose(d["logit"], logit, atol=1e-9 * s, err_msg=str((m1, m2, m3)))
        np.testing.assert_allclose(d["boundaryDeg"], boundary, atol=1e-6)
        probes = angular_margin_deg(torch.tensor([10.0, 30.0, 60.0, 90.0], dtype=torch.float64),
                                    m1=m1, m2=m2, m3=m3, overflow=overflow)
        np.testing.assert_allclose([d["marginDeg"][k] for k in ("10", "30", "60", "90")],
                                   probes.numpy(), atol=1e-6)
        assert d["thetaStarDeg"] == pytest.approx(math.degrees((math.pi - m2) / m1))


# --- a minimal DevTools client -----------------------------------------------------------------

class Tab:
    """One Chromium page driven over the DevTools protocol; events are kept in ``events``."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, suppress_origin=True, timeout=60)
        self.next_id, self.events = 0, []

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def pump(self, seconds: float) -> None:
        """Collect events for about ``seconds``."""
        import websocket

        self.ws.settimeout(seconds)
        try:
            while True:
                self.events.append(json.loads(self.ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(60)

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str, timeout: float = 30.0) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        deadline = time.time() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.time() > deadline:
                raise TimeoutError(f"{url} did not finish loading in {timeout} s")
            self.pump(0.2)
        self.js(MATHJAX_DONE)
        self.settle()

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no request has been pending for ``quiet`` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            pending = set()
            for e in self.events:
                m, p = e.get("method"), e.get("params", {})
                if m == "Network.requestWillBeSent":
                    pending.add(p["requestId"])
                elif m in ("Network.loadingFinished", "Network.loadingFailed"):
                    pending.discard(p["requestId"])
            before = len(self.events)
            self.pump(quiet)
            if not pending and len(self.events) == before:
                return

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot",
                                                    format="png")["data"]))

    def key(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key,
                      windowsVirtualKeyCode=code)

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)


MATHJAX_DONE = """new Promise(resolve => {
  const start = Date.now();
  (function poll() {
    if (window.MathJax && MathJax.Hub && MathJax.Hub.Queue) MathJax.Hub.Queue(() => resolve(1));
    else if (!document.querySelector('script[src*="MathJax.js"]') || Date.now() - start > 20000)
      resolve(0);
    else setTimeout(poll, 50);
  })();
})"""

PAGE_STATE = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => { i.loading = 'eager'; return i.decode().catch(() => null); }));
  const skip = 'script, style, pre, code, textarea, .cell_input, .MathJax_Preview, ' +
               '.MJX_Assistive_MathML, .arclab-mx';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const text = [];
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (el && !el.closest(skip) && el.getClientRects().length) text.push(walker.currentNode.data);
  }
  const visible = el => {
    const r = el.getBoundingClientRect();
    return r.width > 20 && r.height > 20;
  };
  const cells = [...document.querySelectorAll('div.cell')].map(cell => ({
    figure: [...cell.querySelectorAll('.cell_output img')].some(
      i => i.naturalWidth > 0 && visible(i)),
    table: [...cell.querySelectorAll('.cell_output table')].some(t =>
      !t.closest('.arclab-mx') && t.getBoundingClientRect().height > 0),
    explorer: [...cell.querySelectorAll('.arclab-mx')].some(e =>
      visible(e) && Number(e.getAttribute('data-redraws')) > 0),
  }));
  return {
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    text: text.join(' '),
    mathErrors: document.querySelectorAll('.MathJax_Error, merror, mjx-merror').length,
    cells: cells,
    note: [...document.querySelectorAll('.admonition')].map(a => a.innerText).join(' '),
    downloads: [...document.querySelectorAll('a[download], a.btn-download-source-button')]
      .map(a => a.href),
  };
})()"""

UNRENDERED_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\(?:frac|theta|mathrm|sum|cdot"
                            r"|times|top|cos|sin|log|le|ge|in)\b|\$[^$\n]{0,80}\\[A-Za-z]+")


def expected_outputs(nb) -> list[set[str]]:
    """What each code cell must show on its page: "figure", "table" or "explorer".

    From the executed outputs (an image; an HTML table; the explorer) and from the source,
    whose last statement calling ``plotting.*`` or ``notebook.table`` / ``summary_table`` promises
    a figure or a table even when the executed notebook wrote nothing.
    """
    expected = []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        kinds = set()
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(k.startswith("image/") for k in data):
                kinds.add("figure")
            page = data.get("text/html", "")
            if "arclab-mx" in page:
                kinds.add("explorer")
            elif "<table" in page:
                kinds.add("table")
        try:
            last = ast.parse(cell.source).body[-1:]
        except SyntaxError:
            last = []
        for node in last:
            call = node.value if isinstance(node, ast.Expr) else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                    and isinstance(call.func.value, ast.Name):
                name = f"{call.func.value.id}.{call.func.attr}"
                if name.startswith("plotting.") and name != "plotting.use_style":
                    kinds.add("figure")
                elif name in ("notebook.table", "notebook.summary_table"):
                    kinds.add("table")
        if {"remove-output", "remove-cell"} & set(cell.metadata.get("tags", [])):
            kinds = set()
        expected.append(kinds)
    return expected


def page_problems(tab: Tab, base: str, state: dict, nb=None) -> list[str]:
    """Everything wrong with the page just loaded in ``tab`` (``state`` from PAGE_STATE)."""
    problems, host = [], urlparse(base).netloc
    for e in tab.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            problems.append(f"uncaught: {d.get('exception', {}).get('description', d['text'])}")
        elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            problems.append(f"console.{p['type']}: " + " ".join(
                str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            problems.append(f"console: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif m == "Network.requestWillBeSent":
            url = urlparse(p["request"]["url"])
            if url.scheme not in ("data", "blob") and url.netloc != host:
                problems.append(f"request leaves 127.0.0.1: {p['request']['url']}")
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            problems.append(f"request failed: {p['errorText']} ({p.get('type')})")
        elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
            problems.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
    problems += [f"image did not load: {src}" for src in state["broken"]]
    if state["mathErrors"]:
        problems.append(f"{state['mathErrors']} MathJax errors")
    problems += [f"unrendered TeX: ...{state['text'][max(0, m.start() - 40):m.end() + 40]}..."
                 for m in UNRENDERED_TEX.finditer(state["text"])]
    if nb is not None:
        expected = expected_outputs(nb)
        if len(expected) != len(state["cells"]):
            problems.append(f"{len(state['cells'])} code cells on the page, the notebook has "
                            f"{len(expected)}")
        for i, (kinds, shown) in enumerate(zip(expected, state["cells"])):
            problems += [f"code cell {i}: no {kind} shown where the notebook has one"
                         for kind in sorted(kinds) if not shown[kind]]
    return problems


# --- the built book in a browser ---------------------------------------------------------------

@pytest.fixture(scope="module")
def site(smoke_run, tmp_path_factory):
    """The book built from the smoke run, served on 127.0.0.1, and a Chromium tab."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium): the browser checks need it")
    book = tmp_path_factory.mktemp("browser") / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns(
        "_build", "notebooks", "_vendor"))
    html_dir = build_book(smoke_run["executed"], book_dir=book).parent

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet,
                                                                    directory=str(html_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox",
                             "--disable-background-networking", "--disable-gpu",
                             "--disable-extensions", "--no-first-run", "--mute-audio",
                             f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "--window-size=1280,800", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.time() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail(f"{CHROMIUM} did not start (exit {proc.poll()})")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        tab = Tab(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Network", "Log"):
            tab.send(f"{domain}.enable")
        tab.send("Emulation.setDeviceMetricsOverride", width=1280, height=800,
                 deviceScaleFactor=1, mobile=False)
        yield {"tab": tab, "base": f"http://127.0.0.1:{server.server_address[1]}/",
               "html": html_dir, "book": book}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.shutdown()


def pages(html_dir: Path) -> list[str]:
    return sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(html_dir).parts))


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_every_page_renders_offline(site):
    tab, base, html_dir = site["tab"], site["base"], site["html"]
    names = pages(html_dir)
    assert {f"notebooks/{p.stem}.html" for p in notebook_paths()} <= set(names)
    report = {}
    for name in names:
        tab.goto(base + name)
        state = tab.js(PAGE_STATE)
        nb = None
        if name.startswith("notebooks/"):
            nb = nbformat.read(site["book"] / "notebooks" / f"{Path(name).stem}.ipynb", 4)
            stem = Path(name).stem
            downloads = [d for d in state["downloads"] if d.endswith(f"/{stem}.ipynb")]
            assert any("/_downloads/" in d for d in downloads), f"{name}: no download link"
            assert any("/_sources/" in d for d in downloads), f"{name}: no download button"
            for url in downloads:
                got = nbformat.reads(fetch(url).decode(), 4)
                outputs = sum(len(c.get("outputs", [])) for c in got.cells)
                assert (outputs == 0) == ("/_downloads/" in url), f"{url}: outputs {outputs}"
            assert f"python -m arclab.book.runner run --profile book {stem}" in state["note"]
            assert "make lab" in state["note"] and "smoke profile" in state["note"]
        problems = page_problems(tab, base, state, nb)
        if problems:
            report[name] = problems
        tab.screenshot(SCREENSHOTS / (name.replace("/", "__").removesuffix(".html") + ".png"))
    assert not report, "\n".join(f"{k}:\n  " + "\n  ".join(v) for k, v in report.items())


def plain(text: str) -> str:
    """Typographic quotes (as Sphinx renders them) back to ASCII ones."""
    return text.translate(str.maketrans("‘’“”", "''\"\""))


def test_intro_lists_every_chapter_with_its_seed_and_profile(site):
    tab = site["tab"]
    tab.goto(site["base"] + "intro.html")
    items = tab.js("""[...document.querySelectorAll('#chapters li')].map(li => ({
        href: li.querySelector('a').getAttribute('href'), text: li.innerText}))""")
    assert [i["href"] for i in items] == [f"notebooks/{p.stem}.html" for p in notebook_paths()]
    for item, path in zip(items, notebook_paths()):
        title = nbformat.read(path, 4).cells[0].source
        first = re.split(r"\.\s", plain(title.split("Reproduces:", 1)[1].replace(">", " ")))[0]
        expected = " ".join(w for w in first.split()[:6] if "$" not in w and "`" not in w)
        flat = " ".join(plain(item["text"]).split())
        assert expected in flat, (path.stem, flat)
        assert "Profile smoke, executed 20" in flat, flat
    assert re.search(r"Rendered 20\d\d-\d\d-\d\d \d\d:\d\d UTC", tab.js(
        "document.querySelector('#chapters').innerText"))
    tab.js("document.querySelector('#chapters').scrollIntoView()")
    tab.screenshot(SCREENSHOTS / "intro__chapters.png")


EXPLORER_STATE = """(() => {
  const root = document.querySelector('.arclab-mx');
  const axes = svg => {
    const g = root.querySelector(svg + ' .mx-axes');
    return {box: g.dataset.box.split(',').map(Number), x: g.dataset.xDomain.split(',').map(Number),
            y: g.dataset.yDomain.split(',').map(Number)};
  };
  const points = sel => root.querySelector(sel).getAttribute('points').trim().split(' ')
    .map(p => p.split(',').map(Number));
  return {
    drawn: JSON.parse(root.dataset.drawn), redraws: Number(root.dataset.redraws),
    inputs: Object.fromEntries([...root.querySelectorAll('input, select')].map(
      i => [i.name, i.value])),
    rows: [...root.querySelectorAll('.mx-values tbody tr')].map(tr => [
      Number(tr.dataset.thetaDeg), Number(tr.dataset.logit), Number(tr.dataset.boundaryDeg)]),
    logitAxes: axes('.mx-logit'), logitPoints: points('.mx-logit polyline.mx-curve'),
    boundaryAxes: axes('.mx-boundary'), boundaryPoints: points('.mx-boundary polyline.mx-class1'),
    readout: root.querySelector('.mx-readout').textContent,
  };
})()"""


def to_data(points, axes):
    """Drawn SVG coordinates back to data coordinates through the axes' box and domains."""
    left, top, width, height = axes["box"]
    (x0, x1), (y0, y1) = axes["x"], axes["y"]
    pts = np.array(points, dtype=float)
    return np.c_[x0 + (pts[:, 0] - left) / width * (x1 - x0),
                 y1 - (pts[:, 1] - top) / height * (y1 - y0)]


def check_drawn(state) -> dict:
    """The explorer drew arclab's values at the settings its inputs show; returns those."""
    d = state["drawn"]
    inputs = state["inputs"]
    assert d["overflow"] == inputs["overflow"]
    for k in ("m1", "m2", "m3", "s"):
        assert d[k] == pytest.approx(float(inputs[k]), abs=1e-12), k
    theta, logit, boundary = np.array(state["rows"]).T
    np.testing.assert_allclose(theta, np.linspace(0, 180, len(theta)))
    ref_logit, ref_boundary = library_values(theta, d["m1"], d["m2"], d["m3"], d["s"],
                                             d["overflow"])
    np.testing.assert_allclose(logit, ref_logit, atol=1e-9 * d["s"], err_msg=str(d))
    np.testing.assert_allclose(boundary, ref_boundary, atol=1e-6, err_msg=str(d))
    probes = angular_margin_deg(torch.tensor([10.0, 30.0, 60.0, 90.0], dtype=torch.float64),
                                m1=d["m1"], m2=d["m2"], m3=d["m3"], overflow=d["overflow"])
    np.testing.assert_allclose([d["marginDeg"][k] for k in ("10", "30", "60", "90")],
                               probes.numpy(), atol=1e-6)
    star = math.degrees((math.pi - d["m2"]) / d["m1"])
    assert d["thetaStarDeg"] == pytest.approx(star)
    assert (f"{star:.1f}°" in state["readout"]) == (star < 180)
    # the curves on screen are those values (points are written to 0.001 px)
    for points, axes, ys in ((state["logitPoints"], state["logitAxes"], logit),
                             (state["boundaryPoints"], state["boundaryAxes"], boundary)):
        xy = to_data(points, axes)
        px = 0.002 / axes["box"][2] * 180, 0.002 / axes["box"][3] * np.ptp(axes["y"])
        np.testing.assert_allclose(xy[:, 0], theta, atol=px[0])
        np.testing.assert_allclose(xy[:, 1], ys, atol=px[1])
    return d


def test_margin_explorer_sliders_redraw_what_arclab_computes(site):
    tab = site["tab"]
    tab.goto(site["base"] + "notebooks/02_margin_zoo.html")
    tab.js("document.querySelector('.arclab-mx').scrollIntoView({block: 'start'})")
    start = tab.js(EXPLORER_STATE)
    assert check_drawn(start) == {**start["drawn"], "m1": 1.0, "m2": 0.5, "m3": 0.0, "s": 64.0,
                                  "overflow": "monotonic"}
    tab.screenshot(SCREENSHOTS / "02_margin_zoo__explorer.png")

    tab.js("document.querySelector('.arclab-mx [name=m2]').focus()")
    for _ in range(5):  # keyboard: five steps of 0.05 rad
        tab.key("ArrowRight", 39)
    after_keys = tab.js(EXPLORER_STATE)
    assert check_drawn(after_keys)["m2"] == pytest.approx(0.75)
    assert after_keys["redraws"] > start["redraws"]

    box = tab.js("""(() => { const r = document.querySelector('.arclab-mx [name=m1]')
        .getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()""")
    tab.click(box[0] + 0.8 * box[2], box[1] + box[3] / 2)  # mouse: m1 near 80% of its range
    tab.js("""(() => { const root = document.querySelector('.arclab-mx');
        const set = (name, value, kind) => { const el = root.querySelector(`[name=${name}]`);
            el.value = value; el.dispatchEvent(new Event(kind, {bubbles: true})); };
        set('m3', '0.2', 'input'); set('s', '30', 'input'); set('overflow', 'raw', 'change');
    })()""")
    raw = check_drawn(tab.js(EXPLORER_STATE))
    assert 1.5 <= raw["m1"] <= 1.9 and (raw["m3"], raw["s"], raw["overflow"]) == (0.2, 30, "raw")
    theta_star = math.degrees((math.pi - raw["m2"]) / raw["m1"])
    assert theta_star < 180  # the raw curve turns back up past θ*: the page shows it
    tab.screenshot(SCREENSHOTS / "02_margin_zoo__explorer_raw.png")

    tab.js("""(() => { const el = document.querySelector('.arclab-mx [name=overflow]');
        el.value = 'easy'; el.dispatchEvent(new Event('change', {bubbles: true})); })()""")
    assert check_drawn(tab.js(EXPLORER_STATE))["overflow"] == "easy"
    tab.js("document.querySelector('.arclab-mx .mx-reset').click()")
    assert check_drawn(tab.js(EXPLORER_STATE)) == start["drawn"]
    assert page_problems(tab, site["base"], tab.js(PAGE_STATE)) == []


def test_a_broken_page_fails_the_checks(site):
    """The checks can fail: an external script and a notebook page that lost its figures."""
    tab, html_dir = site["tab"], site["html"]
    page = (html_dir / "notebooks" / "02_margin_zoo.html").read_text()
    broken = page.replace("</head>", '<script src="https://cdn.example.org/x.js"></script>'
                          "</head>", 1)
    broken = re.sub(r'<img [^>]*src="\.\./_images/[^"]+"[^>]*>', "", broken)
    broken = broken.replace("</body>", "<p class='tex2jax_ignore'>raw $$x^2$$</p><script>"
                            "console.error('boom')</script></body>", 1)
    (html_dir / "notebooks" / "broken.html").write_text(broken)
    try:
        tab.goto(site["base"] + "notebooks/broken.html")
        nb = nbformat.read(site["book"] / "notebooks" / "02_margin_zoo.ipynb", 4)
        problems = "\n".join(page_problems(tab, site["base"], tab.js(PAGE_STATE), nb))
    finally:
        (html_dir / "notebooks" / "broken.html").unlink()
    assert "request leaves 127.0.0.1: https://cdn.example.org/x.js" in problems
    figures = [i for i, kinds in enumerate(expected_outputs(nb)) if "figure" in kinds]
    assert len(figures) >= 4
    for i in figures:
        assert f"code cell {i}: no figure shown" in problems
    assert "unrendered TeX" in problems and "console.error: boom" in problems


def test_expected_outputs_come_from_the_source_too():
    """A notebook that wrote nothing still promises its figures and tables."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("plotting.use_style()\nx = 1"),
        nbformat.v4.new_code_cell("plotting.target_logit_curves(presets);"),
        nbformat.v4.new_code_cell("rows = f(x)\nnotebook.table(rows, digits=2)"),
        nbformat.v4.new_code_cell("notebook.table(rows)\nprint('done')"),
        nbformat.v4.new_code_cell("plotting.margin_panel()", metadata={"tags":
                                                                      ["remove-output"]}),
    ])
    assert expected_outputs(nb) == [set(), {"figure"}, {"table"}, set(), set()]
    nb.cells[3].outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": "<table><tr><td>1</td></tr></table>", "image/png": "iVBOR"})]
    assert expected_outputs(nb)[3] == {"figure", "table"}
