#!/bin/sh
# Verification runs untrusted code inside bubblewrap (Debian package `bubblewrap`).
# Install it where we can (root + apt); elsewhere say how, and carry on: verification
# then falls back to process-level isolation and every report says so.
command -v bwrap >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (the verification sandbox) ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1; } \
      || echo "warning: could not install bubblewrap; verification will use process-level isolation"
else
    echo "note: bubblewrap (bwrap) not found; install it for the full verification sandbox" \
         "(Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)." \
         "Without it verification uses process-level isolation."
fi
exit 0
