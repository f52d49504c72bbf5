#!/usr/bin/env bash
# Install what tests/lab/test_browser.py needs beyond the Python packages: Debian's Chromium at
# /usr/bin/chromium and the fonts it renders JupyterLab with. Idempotent: installs only the
# packages that are missing. Exits non-zero, with a message, when anything is still missing,
# so that CI fails instead of skipping the browser test.
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core fonts-liberation)
CHROMIUM=/usr/bin/chromium

fail() {
    echo "browser-setup: ERROR: $*" >&2
    exit 1
}

missing=()
for package in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || fail "apt-get not found; install ${missing[*]} by hand"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || fail "not root and no sudo; cannot install ${missing[*]}"
        sudo=(sudo)
    fi
    echo "browser-setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q || fail "apt-get update failed"
    "${sudo[@]}" apt-get install -y -q "${missing[@]}" || fail "apt-get install ${missing[*]} failed"
fi

[ -x "$CHROMIUM" ] || fail "$CHROMIUM is missing after installing chromium"

# A headless start proves the shared libraries are all there.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
if ! dom=$(timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --dump-dom 'data:text/html,<p>browser-setup-ok</p>' 2>/dev/null); then
    fail "$CHROMIUM does not start headless"
fi
case "$dom" in
    *browser-setup-ok*) ;;
    *) fail "$CHROMIUM started but did not render a page" ;;
esac

echo "browser-setup: $("$CHROMIUM" --version 2>/dev/null) ready"
