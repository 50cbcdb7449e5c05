#!/usr/bin/python3
"""Render an HTML page in headless Chromium and check what a reader would see.

Run with Debian's /usr/bin/python3 (it has python3-websocket); needs /usr/bin/chromium.

    check_page.py PAGE.html --screenshot OUT.png [--expect 'CSS_SELECTOR>=N' ...]
        [--expect-text 'some text' ...] [--images-loaded] [--expect-cjk-font] [--json OUT.json]

The page is opened from disk (file://) over the DevTools protocol. It passes (exit 0) only when
  - nothing was reported as an error while it loaded: console.error / console.assert, uncaught
    exceptions, browser log errors (failed resource loads, Content-Security-Policy violations);
  - it requested nothing but itself and data: URIs (unless --allow-external), since shopclip pages
    must be self-contained;
  - every --expect 'SELECTOR>=N' (also '==N', '<=N'; a bare selector means >=1) matches in the
    rendered DOM;
  - every --expect-text appears in document.body.innerText (rendered text, not hidden markup);
  - with --images-loaded, every <img> is complete with naturalWidth > 0;
  - with --expect-cjk-font, text with CJK ideographs is drawn with a CJK font: the platform fonts
    Chromium used for those elements (CSS.getPlatformFontsForNode) include one matching
    --cjk-font (default "CJK"), and ideographs measure about 1 em wide in the page font.
Exit 1: a check failed. Exit 2: the check could not run (bad arguments, Chromium did not start,
the page did not load, timeout). Chromium and its temporary profile are removed in every case.
A full-page screenshot is written with --screenshot; --json writes the summary as JSON.
"""

import argparse
import base64
import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
VIEWPORT = (1280, 900)
MAX_SCREENSHOT_HEIGHT = 16000  # px; longer pages are cut (Chromium's texture limit is ~16k)


class CheckError(Exception):
    """The check could not be carried out (as opposed to: the page failed a check)."""


class Timeout(CheckError):
    pass


# ------------------------------------------------------------------------------------------------
# DevTools protocol over one browser-level websocket, page commands through a flat session.


class DevTools:
    def __init__(self, ws_url, deadline, on_event):
        import websocket  # python3-websocket

        self._websocket = websocket
        self.deadline = deadline
        self.on_event = on_event
        self.ws = websocket.create_connection(
            ws_url, timeout=self._remaining("connecting to Chromium"), suppress_origin=True)
        self.next_id = 0
        self.session = None

    def _remaining(self, what):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Timeout(what)
        return left

    def _receive(self, what):
        self.ws.settimeout(min(self._remaining(what), 1.0))
        try:
            raw = self.ws.recv()
        except self._websocket.WebSocketTimeoutException:
            return None
        except (self._websocket.WebSocketException, OSError) as error:
            raise CheckError(f"lost the DevTools connection while {what}: {error}") from None
        message = json.loads(raw)
        if "id" not in message:
            self.on_event(message.get("method", ""), message.get("params", {}))
        return message

    def call(self, method, params=None, session=True, what=None):
        """Sends a command and returns its result; events arriving meanwhile go to on_event."""
        self.next_id += 1
        request = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            request["sessionId"] = self.session
        self.ws.send(json.dumps(request))
        what = what or f"waiting for {method}"
        while True:
            message = self._receive(what)
            if message is not None and message.get("id") == request["id"]:
                if "error" in message:
                    raise CheckError(f"{method} failed: {message['error'].get('message')}")
                return message.get("result", {})

    def wait_for(self, condition, what):
        """Processes events until condition() is true."""
        while not condition():
            self._receive(what)

    def drain(self, seconds):
        """Processes the events of the next `seconds` (late console messages)."""
        end = min(time.monotonic() + seconds, self.deadline)
        while time.monotonic() < end:
            self.ws.settimeout(max(0.01, end - time.monotonic()))
            try:
                raw = self.ws.recv()
            except self._websocket.WebSocketTimeoutException:
                break
            message = json.loads(raw)
            if "id" not in message:
                self.on_event(message.get("method", ""), message.get("params", {}))

    def evaluate(self, expression, what, await_promise=False):
        result = self.call("Runtime.evaluate", {
            "expression": expression,
            "returnByValue": True,
            "awaitPromise": await_promise,
        }, what=what)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CheckError(f"checker script failed while {what}: {text}")
        return result.get("result", {}).get("value")

    def close_browser(self):
        """Asks Chromium to quit, without waiting for the answer."""
        self.next_id += 1
        try:
            self.ws.send(json.dumps({"id": self.next_id, "method": "Browser.close"}))
            return True
        except Exception:  # the connection is already gone: the caller kills the process
            return False

    def close(self):
        try:
            self.ws.close()
        except Exception:  # closing a dead socket: nothing left to do
            pass


# ------------------------------------------------------------------------------------------------
# Chromium process


class Chromium:
    """A headless Chromium with its own temporary profile; stop() kills it and removes the profile."""

    def __init__(self, deadline):
        self.temp = tempfile.mkdtemp(prefix="check_page_")
        self.profile = os.path.join(self.temp, "profile")
        self.log_path = os.path.join(self.temp, "chromium.log")
        self.process = None
        self.deadline = deadline

    def start(self):
        if not os.access(CHROMIUM, os.X_OK):
            raise CheckError(f"{CHROMIUM} not found (set CHROMIUM to another binary)")
        args = [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            "--force-color-profile=srgb", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "about:blank",
        ]
        # Chromium's own temporary files (a singleton socket directory, which it leaves behind
        # when killed) go under our directory too, so stop() removes them.
        env = dict(os.environ, TMPDIR=self.temp)
        with open(self.log_path, "wb") as log:
            # Own session: stop() can end Chromium's helper processes with it, and only them.
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=log, env=env,
                                            start_new_session=True)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        while True:
            if self.process.poll() is not None:
                raise CheckError(f"Chromium exited with status {self.process.returncode} before "
                                 f"DevTools was ready:\n{self.log_tail()}")
            try:
                with open(port_file) as handle:
                    lines = handle.read().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                    return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
            except FileNotFoundError:
                pass
            if time.monotonic() > self.deadline:
                raise Timeout("waiting for Chromium to open its DevTools port")
            time.sleep(0.05)

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no Chromium log)"

    def stop(self, grace_s=0):
        """Waits up to grace_s for Chromium to exit by itself (after Browser.close), then kills
        its process group and removes the temporary directory."""
        if self.process is not None and grace_s > 0:
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        if self.process is not None and self.process.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.process is not None:
            # Helpers that outlived the browser process are in the same process group.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# The checks


def parse_expect(spec):
    match = re.match(r"^(.*?)\s*(>=|<=|==)\s*(\d+)\s*$", spec)
    if match:
        selector, op, n = match.group(1), match.group(2), int(match.group(3))
    else:
        selector, op, n = spec.strip(), ">=", 1
    if not selector:
        raise CheckError(f"--expect '{spec}': empty selector")
    return {"spec": spec, "selector": selector, "op": op, "n": n}


def compare(count, op, n):
    return {">=": count >= n, "<=": count <= n, "==": count == n}[op]


# Reads the rendered DOM: selector counts, rendered text, images. Arguments are JSON literals.
DOM_SCRIPT = r"""
((selectors, texts) => {
  const out = {selectors: [], texts: [], images: [], title: document.title};
  for (const selector of selectors) {
    try {
      out.selectors.push({selector, count: document.querySelectorAll(selector).length});
    } catch (error) {
      out.selectors.push({selector, count: -1, error: String(error.message || error)});
    }
  }
  const rendered = document.body ? document.body.innerText : "";
  out.inner_text_chars = rendered.length;
  for (const text of texts) out.texts.push({text, found: rendered.includes(text)});
  for (const img of Array.from(document.images)) {
    out.images.push({src: (img.currentSrc || img.src || "").slice(0, 80), complete: img.complete,
                     natural_width: img.naturalWidth, natural_height: img.naturalHeight});
  }
  const root = document.documentElement;
  out.scroll_width = root.scrollWidth;
  out.client_width = root.clientWidth;
  out.charset = document.characterSet;
  return out;
})(%s, %s)
"""

# Marks up to 30 rendered elements whose own text holds CJK ideographs (data-check-page-cjk) and
# measures ideographs in the page's body font on a canvas.
CJK_SCRIPT = r"""
(() => {
  const ideograph = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
  const walker = document.createTreeWalker(document.body || document.documentElement,
                                           NodeFilter.SHOW_TEXT);
  const unrendered = new Set(["title", "desc", "style", "script", "noscript", "template"]);
  const elements = new Set();
  while (walker.nextNode() && elements.size < 30) {
    const node = walker.currentNode;
    const element = node.parentElement;
    if (!element || !ideograph.test(node.data)) continue;
    // Text that is never drawn (<title> tooltips, <style>, hidden elements) has no font.
    if (unrendered.has(element.localName) || element.getClientRects().length === 0) continue;
    elements.add(element);
  }
  const samples = [];
  for (const element of elements) {
    element.setAttribute("data-check-page-cjk", String(samples.length));
    samples.push((element.textContent || "").trim().slice(0, 30));
  }
  const family = getComputedStyle(document.body || document.documentElement).fontFamily;
  const canvas = document.createElement("canvas").getContext("2d");
  canvas.font = "16px " + family;
  const text = "中文字体测试";
  const width = canvas.measureText(text).width;
  return {samples, family, measured_em: width / 16 / text.length,
          fonts_check: document.fonts.check('16px "Noto Sans CJK SC"', text)};
})()
"""


class PageCheck:
    def __init__(self, args):
        self.args = args
        self.errors = []      # console / log / exception messages that fail the page
        self.warnings = []
        self.requests = []    # URLs other than the page itself and data:
        self.loaded = False
        self.page_url = None

    def on_event(self, method, params):
        if method == "Runtime.consoleAPICalled":
            parts = []
            for arg in params.get("args", []):
                value = arg.get("value", arg.get("description", arg.get("type", "")))
                parts.append(value if isinstance(value, str) else json.dumps(value))
            text = " ".join(parts)
            kind = params.get("type")
            if kind in ("error", "assert"):
                self.errors.append(f"console.{kind}: {text}")
            elif kind == "warning":
                self.warnings.append(f"console.warn: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            where = f" (line {details.get('lineNumber', 0) + 1})" if "lineNumber" in details else ""
            self.errors.append(f"uncaught exception{where}: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            text = entry.get("text", "")
            if entry.get("url"):
                text += f" [{entry['url'][:120]}]"
            if entry.get("level") == "error":
                self.errors.append(f"{entry.get('source', 'log')}: {text}")
            elif entry.get("level") == "warning":
                self.warnings.append(f"{entry.get('source', 'log')}: {text}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith("data:") and url != self.page_url and url != "about:blank":
                self.requests.append(url[:200])
        elif method == "Page.loadEventFired":
            self.loaded = True

    def run(self):
        args = self.args
        started = time.monotonic()
        deadline = started + args.timeout
        page_path = pathlib.Path(args.page).resolve()
        if not page_path.is_file():
            raise CheckError(f"{args.page}: no such file")
        self.page_url = page_path.as_uri()
        expects = [parse_expect(spec) for spec in args.expect]

        chromium = Chromium(deadline)
        devtools = None
        try:
            ws_url = chromium.start()
            devtools = DevTools(ws_url, deadline, self.on_event)
            targets = devtools.call("Target.getTargets", session=False)["targetInfos"]
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                target_id = pages[0]["targetId"]
            else:
                target_id = devtools.call("Target.createTarget", {"url": "about:blank"},
                                          session=False)["targetId"]
            devtools.session = devtools.call("Target.attachToTarget",
                                             {"targetId": target_id, "flatten": True},
                                             session=False)["sessionId"]
            for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable",
                           "DOM.enable", "CSS.enable"):
                devtools.call(method)
            devtools.call("Emulation.setDeviceMetricsOverride", {
                "width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1,
                "mobile": False})

            self.loaded = False
            navigation = devtools.call("Page.navigate", {"url": self.page_url})
            if navigation.get("errorText"):
                raise CheckError(f"cannot open {self.page_url}: {navigation['errorText']}")
            devtools.wait_for(lambda: self.loaded, f"waiting for {page_path.name} to load")
            devtools.evaluate(
                "document.fonts.ready.then(() => Promise.all(Array.from(document.images).map("
                "img => img.decode().catch(() => null)))).then(() => true)",
                "waiting for fonts and images", await_promise=True)
            devtools.drain(0.3)
            load_s = time.monotonic() - started

            layout = devtools.call("Page.getLayoutMetrics")
            content = layout.get("cssContentSize") or layout.get("contentSize")
            page_size = (int(content["width"]), int(content["height"]))
            screenshot = None
            if args.screenshot:
                height = min(page_size[1], MAX_SCREENSHOT_HEIGHT)
                shot = devtools.call("Page.captureScreenshot", {
                    "format": "png", "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": max(page_size[0], 1),
                             "height": max(height, 1), "scale": 1}},
                    what="taking the screenshot")
                with open(args.screenshot, "wb") as handle:
                    handle.write(base64.b64decode(shot["data"]))
                screenshot = {"path": args.screenshot, "width": page_size[0], "height": height,
                              "cut": page_size[1] > MAX_SCREENSHOT_HEIGHT}

            dom = devtools.evaluate(
                DOM_SCRIPT % (json.dumps([e["selector"] for e in expects]),
                              json.dumps(args.expect_text)),
                "reading the rendered DOM")
            cjk = self.check_cjk(devtools) if args.expect_cjk_font else None
            devtools.drain(0.1)
        finally:
            closing = devtools is not None and devtools.close_browser()
            if devtools is not None:
                devtools.close()
            chromium.stop(grace_s=3 if closing else 0)

        return self.summarise(expects, dom, cjk, screenshot, page_size, load_s,
                              time.monotonic() - started)

    def check_cjk(self, devtools):
        probe = devtools.evaluate(CJK_SCRIPT, "probing CJK text")
        root = devtools.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node_ids = devtools.call("DOM.querySelectorAll",
                                 {"nodeId": root, "selector": "[data-check-page-cjk]"})["nodeIds"]
        pattern = re.compile(self.args.cjk_font, re.IGNORECASE)
        nodes = []
        for node_id in node_ids:
            attributes = devtools.call("DOM.getAttributes", {"nodeId": node_id})["attributes"]
            index = int(dict(zip(attributes[::2], attributes[1::2]))["data-check-page-cjk"])
            sample = probe["samples"][index]
            fonts = devtools.call("CSS.getPlatformFontsForNode", {"nodeId": node_id})["fonts"]
            used = [f.get("familyName", "?") for f in fonts if f.get("glyphCount", 0) > 0]
            ok = any(pattern.search(f.get("familyName", "") + " " + f.get("postScriptName", ""))
                     and f.get("glyphCount", 0) > 0 for f in fonts)
            nodes.append({"sample": sample, "fonts": used, "ok": ok})
        em = probe["measured_em"]
        return {"nodes": nodes, "family": probe["family"], "measured_em": em,
                "fonts_check": probe["fonts_check"], "em_ok": 0.85 <= em <= 1.15}

    def summarise(self, expects, dom, cjk, screenshot, page_size, load_s, elapsed_s):
        args = self.args
        failures = []
        failures += [f"error on page: {e}" for e in self.errors]
        if self.requests and not args.allow_external:
            failures += [f"page requested an external resource: {u}" for u in self.requests]

        selectors = []
        for expect, found in zip(expects, dom["selectors"]):
            ok = found["count"] >= 0 and compare(found["count"], expect["op"], expect["n"])
            entry = {"selector": expect["selector"], "op": expect["op"], "n": expect["n"],
                     "count": found["count"], "ok": ok}
            if "error" in found:
                entry["error"] = found["error"]
                failures.append(f"--expect '{expect['spec']}': bad selector: {found['error']}")
            elif not ok:
                failures.append(f"--expect '{expect['spec']}': {found['count']} element(s) match")
            selectors.append(entry)
        for text in dom["texts"]:
            if not text["found"]:
                failures.append(f"--expect-text '{text['text']}': not in the rendered text")

        broken = [i for i in dom["images"] if not i["complete"] or i["natural_width"] <= 0]
        if args.images_loaded and broken:
            failures += [f"image not loaded: {i['src']}" for i in broken]

        if cjk is not None:
            if not cjk["nodes"]:
                failures.append("--expect-cjk-font: no CJK text on the page")
            for node in cjk["nodes"]:
                if not node["ok"]:
                    failures.append(f"--expect-cjk-font: '{node['sample']}' drawn with "
                                    f"{', '.join(node['fonts']) or 'no font'}, none matching "
                                    f"/{args.cjk_font}/")
            if not cjk["em_ok"]:
                failures.append(f"--expect-cjk-font: ideographs measure {cjk['measured_em']:.2f} "
                                f"em in font {cjk['family']}, expected about 1")

        if dom["charset"].lower() != "utf-8":
            failures.append(f"document charset is {dom['charset']}, not UTF-8")

        return {
            "page": str(pathlib.Path(args.page).resolve()),
            "ok": not failures,
            "failures": failures,
            "console": {"errors": self.errors, "warnings": self.warnings},
            "external_requests": self.requests,
            "selectors": selectors,
            "texts": dom["texts"],
            "images": {"total": len(dom["images"]), "loaded": len(dom["images"]) - len(broken),
                       "broken": [i["src"] for i in broken]},
            "cjk_font": cjk,
            "title": dom["title"],
            "page_size": {"width": page_size[0], "height": page_size[1]},
            "horizontal_overflow": dom["scroll_width"] > dom["client_width"],
            "screenshot": screenshot,
            "load_s": round(load_s, 3),
            "elapsed_s": round(elapsed_s, 3),
        }


def print_summary(summary):
    out = [f"check_page: {summary['page']}"]
    size = summary["page_size"]
    shot = summary["screenshot"]
    out.append(f"  loaded in {summary['load_s']:.2f} s, page {size['width']}x{size['height']} px"
               + (f", screenshot {shot['path']}" + (" (cut)" if shot["cut"] else "")
                  if shot else ""))
    console = summary["console"]
    out.append(f"  console: {len(console['errors'])} error(s), {len(console['warnings'])} "
               f"warning(s)")
    for message in console["errors"] + console["warnings"]:
        out.append(f"    {message[:300]}")
    for url in summary["external_requests"]:
        out.append(f"  external request: {url}")
    for s in summary["selectors"]:
        out.append(f"  {'ok  ' if s['ok'] else 'FAIL'} {s['selector']} {s['op']} {s['n']}: "
                   f"{s['count']}")
    for t in summary["texts"]:
        out.append(f"  {'ok  ' if t['found'] else 'FAIL'} text '{t['text']}'")
    images = summary["images"]
    out.append(f"  images: {images['loaded']}/{images['total']} loaded")
    cjk = summary["cjk_font"]
    if cjk is not None:
        fonts = sorted({f for node in cjk["nodes"] for f in node["fonts"]})
        out.append(f"  CJK text: {len(cjk['nodes'])} element(s), fonts used: "
                   f"{'; '.join(fonts) or 'none'}; ideograph width {cjk['measured_em']:.2f} em")
    if summary["horizontal_overflow"]:
        out.append("  note: the page is wider than the viewport")
    if summary["ok"]:
        out.append("PASS")
    else:
        out.append("FAIL")
        out += [f"  - {f}" for f in summary["failures"]]
    print("\n".join(out), flush=True)


def main(argv):
    parser = argparse.ArgumentParser(
        description="Render a page in headless Chromium and check it (see the module doc).")
    parser.add_argument("page", help="HTML file to open")
    parser.add_argument("--screenshot", metavar="OUT.png", help="full-page PNG screenshot")
    parser.add_argument("--expect", action="append", default=[], metavar="'SELECTOR>=N'",
                        help="CSS selector that must match >=N (or ==N, <=N) elements")
    parser.add_argument("--expect-text", action="append", default=[], metavar="TEXT",
                        help="text that must appear in document.body.innerText")
    parser.add_argument("--images-loaded", action="store_true",
                        help="every <img> must be complete with naturalWidth > 0")
    parser.add_argument("--expect-cjk-font", action="store_true",
                        help="CJK text must be drawn with a CJK font")
    parser.add_argument("--cjk-font", default="CJK", metavar="REGEX",
                        help="what a CJK font's family name matches (default: CJK)")
    parser.add_argument("--allow-external", action="store_true",
                        help="allow requests other than the page itself and data: URIs")
    parser.add_argument("--json", metavar="OUT.json", help="write the summary as JSON")
    parser.add_argument("--timeout", type=float, default=60, metavar="SECONDS",
                        help="give up after this long (default 60)")
    args = parser.parse_args(argv)

    def interrupted(signum, _frame):
        raise CheckError(f"interrupted by signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    def write_json(summary):
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(summary, handle, ensure_ascii=False, indent=2)
                handle.write("\n")

    error = None
    if importlib.util.find_spec("websocket") is None:
        error = "python3-websocket is not installed (run with /usr/bin/python3)"
    else:
        try:
            summary = PageCheck(args).run()
        except Timeout as timeout:
            error = f"timed out after {args.timeout:g} s {timeout}"
        except CheckError as failure:
            error = str(failure)
        except KeyboardInterrupt:
            error = "interrupted"
    if error is not None:
        print(f"check_page: {error}", file=sys.stderr)
        write_json({"page": args.page, "ok": False, "error": error})
        return 2
    print_summary(summary)
    write_json(summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
