#!/usr/bin/env bash
# Fetches Debian data packages that hold real recorded speech and unpacks each into
# DEST/<package>/ (apt-get download + dpkg -x: nothing is installed, no game is pulled in).
# Used by `cocktail corpus real`; idempotent (DEST/<package>/.extracted marks a finished one).
#   bash scripts/fetch-speech-packages.sh DEST PACKAGE...
set -euo pipefail
DEST="$1"; shift
# Reserved for an independent test of the project: never fetched.
for p in "$@"; do
  case "$p" in fillets-ng-data*|asterisk-core-sounds-*|asterisk-prompt-*|ktuberling-data*)
    echo "fetch-speech-packages: $p is reserved for an independent test and is never used" >&2; exit 2;;
  esac
done
command -v apt-get >/dev/null || { echo "fetch-speech-packages: needs apt-get (Debian)" >&2; exit 1; }
mkdir -p "$DEST"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for p in "$@"; do
  [ -f "$DEST/$p/.extracted" ] && continue
  if ! apt-cache show "$p" >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; fi
    apt-cache show "$p" >/dev/null 2>&1 || { echo "fetch-speech-packages: package $p not known to apt (run apt-get update as root)" >&2; exit 1; }
  fi
  (cd "$work" && apt-get download -q "$p" >/dev/null 2>&1) || { echo "fetch-speech-packages: apt-get download $p failed" >&2; exit 1; }
  rm -rf "$DEST/$p"; mkdir -p "$DEST/$p"
  dpkg-deb -x "$work/$p"_*.deb "$DEST/$p"
  dpkg-deb -f "$work/$p"_*.deb Version > "$DEST/$p/.version"
  rm -f "$work/$p"_*.deb
  touch "$DEST/$p/.extracted"
  echo "fetch-speech-packages: $p $(cat "$DEST/$p/.version")"
done
