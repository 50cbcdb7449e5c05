#!/usr/bin/env bash
# Proves tests/browser/check_page.py can fail: a good page must pass (exit 0) and each bad page
# must fail its check (exit 1, with the reason in the JSON summary): a script error, a console
# error, an undecodable <img>, an <img> of a missing file, an external stylesheet, a missing
# selector, a wrong count, a bad selector, text that is absent or hidden, a CJK font that is not
# used, a page without CJK text. A page that never finishes loading must time out (exit 2).
# Afterwards no Chromium of these runs may be left and their temporary profiles must be gone.
# Cases run 4 at a time.
#
# Exit 77 (ctest: skipped) when Chromium or python3-websocket is not installed; fails when CI=true.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
checker="$here/check_page.py"
python=/usr/bin/python3
chromium="${CHROMIUM:-/usr/bin/chromium}"

source "$here/../skip_or_fail.sh"
if [[ ! -x "$chromium" ]]; then
  skip_or_fail "$chromium not installed"
fi
if [[ ! -x "$python" ]] || ! "$python" -c 'import websocket' 2>/dev/null; then
  skip_or_fail "$python with python3-websocket not available"
fi

scratch="$(mktemp -d /tmp/check_page_selftest.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
# check_page.py makes its Chromium profile under TMPDIR: here, so leftovers can be found.
export TMPDIR="$scratch/tmp"
mkdir -p "$TMPDIR"

# An 8x8 SVG image as a data: URI: loads in any browser, needs no encoder.
svg_image="$(printf '%s' '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="#1a7f37"/></svg>' | base64 -w0)"

# write_page NAME EXTRA_HTML: a self-contained page with CJK text, a chart and a data: image.
write_page() {
  cat >"$scratch/$1.html" <<END_OF_PAGE
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>$1</title>
<style>body { font-family: "Noto Sans CJK SC", sans-serif; }</style></head>
<body>
<h1>Check page self-test</h1>
<p>查询：高级感托特包斜挎</p>
<svg class="chart" data-chart="bar" role="img" width="200" height="100"><title>chart</title>
<rect class="bar" x="10" y="10" width="80" height="30" fill="#4e79a7"/>
<text x="10" y="70">连衣裙</text></svg>
<figure class="thumb hit"><img src="data:image/svg+xml;base64,$svg_image" alt="thumb"></figure>
$2
</body></html>
END_OF_PAGE
}

# check NAME EXPECTED_RC REASON_REGEX [check_page.py options...]: runs the checker on NAME.html
# and writes NAME.result: "ok: ..." when it exited EXPECTED_RC and (when REASON_REGEX is given)
# said why in its JSON summary (exit 1) or its output (other exits), "FAIL: ..." otherwise.
check() {
  local name="$1" expected="$2" reason="$3"
  shift 3
  local json="$scratch/$name.json" log="$scratch/$name.log" result="$scratch/$name.result"
  "$python" "$checker" "$scratch/$name.html" --json "$json" "$@" >"$log" 2>&1
  local rc=$?
  if [[ $rc -ne $expected ]]; then
    echo "FAIL: $name: check_page.py exited $rc, expected $expected" >"$result"
  elif [[ -n "$reason" && $expected -eq 1 ]] && ! grep -Eq -- "$reason" "$json"; then
    echo "FAIL: $name: failed, but not with a reason matching /$reason/" >"$result"
  elif [[ -n "$reason" && $expected -ne 1 ]] && ! grep -Eq -- "$reason" "$log"; then
    echo "FAIL: $name: output does not match /$reason/" >"$result"
  else
    echo "ok: $name (exit $rc${reason:+, reason /$reason/})" >"$result"
    return
  fi
  sed 's/^/    /' "$log" >>"$result"
}

# Runs `check` in the background, at most 4 at a time (each is a whole Chromium).
names=()
spawn() {
  names+=("$1")
  while (($(jobs -rp | wc -l) >= 4)); do
    wait -n
  done
  check "$@" &
}

good_checks=(--expect 'svg.chart>=1' --expect 'rect.bar==1' --expect 'figure.hit img'
  --expect-text '高级感托特包斜挎' --images-loaded --expect-cjk-font)

# 1. The good page passes every check and leaves a PNG screenshot.
write_page good ""
spawn good 0 "" "${good_checks[@]}" --screenshot "$scratch/good.png"

# 2. Errors while loading.
write_page script_error '<script>window.undefinedFunction();</script>'
spawn script_error 1 "uncaught exception" "${good_checks[@]}"
write_page console_error '<script>console.error("something broke");</script>'
spawn console_error 1 "console.error: something broke" "${good_checks[@]}"

# 3. Broken images: undecodable data (only --images-loaded sees it) and a missing file.
write_page broken_image '<img src="data:image/png;base64,AAAAAAAA" alt="broken">'
spawn broken_image 1 "image not loaded" "${good_checks[@]}"
write_page missing_image '<img src="no_such_image.jpg" alt="missing">'
spawn missing_image 1 "no_such_image.jpg" --expect 'svg.chart>=1'

# 4. Not self-contained: a stylesheet outside the page (a missing local file, so no network).
write_page external_css '<link rel="stylesheet" href="no_such_style.css">'
spawn external_css 1 "no_such_style.css" --expect 'svg.chart>=1'

# 5. Expectations the page does not meet.
for name in missing_selector wrong_count bad_selector missing_text wrong_cjk_font; do
  write_page "$name" ""
done
spawn missing_selector 1 "svg.chart>=2.*1 element" --expect 'svg.chart>=2'
spawn wrong_count 1 "rect.bar==0" --expect 'rect.bar==0'
spawn bad_selector 1 "bad selector" --expect 'svg[[[>=1'
spawn missing_text 1 "not in the rendered text" --expect-text 'text that is not on the page'
write_page hidden_text '<div style="display:none">only in hidden markup</div>'
spawn hidden_text 1 "only in hidden markup" --expect-text 'only in hidden markup'
spawn wrong_cjk_font 1 "none matching" --expect-cjk-font --cjk-font 'NoSuchFontFamily'
cat >"$scratch/no_cjk.html" <<'END_OF_PAGE'
<!DOCTYPE html><html><head><meta charset="utf-8"><title>no cjk</title></head>
<body><p>English only.</p></body></html>
END_OF_PAGE
spawn no_cjk 1 "no CJK text on the page" --expect-cjk-font

# 6. A page that never finishes loading times out (exit 2), and is cleaned up all the same.
write_page endless '<script>for (;;) {}</script>'
spawn endless 2 "timed out" --timeout 8

wait

failures=0
for name in "${names[@]}"; do
  if [[ -f "$scratch/$name.result" ]]; then
    cat "$scratch/$name.result"
    if grep -q '^FAIL' "$scratch/$name.result"; then
      failures=$((failures + 1))
    fi
  else
    echo "FAIL: $name: no result"
    failures=$((failures + 1))
  fi
done
if [[ "$(head -c 8 "$scratch/good.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" != "89504e470d0a1a0a" ]]; then
  echo "FAIL: good: no PNG screenshot written"
  failures=$((failures + 1))
fi
if ! grep -q '"ok": true' "$scratch/good.json" 2>/dev/null; then
  echo "FAIL: good: the JSON summary does not say ok"
  failures=$((failures + 1))
fi
# Nothing of any run may survive it: no Chromium with a profile under $TMPDIR, no profile.
if pgrep -f -- "$TMPDIR/" >/dev/null; then
  echo "FAIL: a Chromium process with a profile under $TMPDIR is still running"
  failures=$((failures + 1))
fi
if [[ -n "$(ls -A "$TMPDIR")" ]]; then
  echo "FAIL: temporary files left in $TMPDIR: $(ls -A "$TMPDIR" | tr '\n' ' ')"
  failures=$((failures + 1))
fi

if [[ $failures -ne 0 ]]; then
  echo "check_page self-test: $failures failure(s)"
  exit 1
fi
echo "check_page self-test: all ${#names[@]} cases passed"
