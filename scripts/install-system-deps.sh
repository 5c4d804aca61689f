#!/usr/bin/env bash
# Installs the Debian packages the speech-corpus builder uses: the TTS engines, their voices
# (MBROLA diphone voices live in contrib/non-free) and fortune sentence files; and the browser
# the tests of `cocktail serve` drive (Debian's chromium and its chromedriver: no browser is
# downloaded at test time).
# Idempotent; run as root (or through sudo) on Debian 12 or newer. Skips work already done.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: needs root (or sudo) to install Debian packages" >&2; exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: apt-get not found; this script supports Debian-based systems only." >&2
  echo "Install espeak-ng, mbrola voices, flite, festival and fortunes by other means." >&2
  exit 1
fi

MBROLA_VOICES="af1 ar1 ar2 br1 br2 br3 br4 bz1 ca1 ca2 cn1 cr1 cz1 cz2 de1 de2 de3 de4 de5 de6 de7 de8
  ee1 en1 es1 es2 es3 es4 fr1 fr2 fr3 fr4 fr5 fr6 fr7 gr1 gr2 hb1 hb2 hn1 hu1 ic1 id1 in1 in2 ir1
  it1 it2 it3 it4 jp1 jp2 jp3 la1 lt1 lt2 ma1 mx1 mx2 nl1 nl2 nl3 nz1 pl1 pt1 ro1 sw1 sw2 tl1 tr1
  tr2 us1 us2 us3 vz1"
# Every voice below is a different recorded person in a language that has fortunes (the
# corpus builder's text), so each adds a speaker that splits can hold out. festvox-us1..3/en1
# are left out on purpose: they are the MBROLA us1..3/en1 persons again.
PACKAGES="espeak-ng mbrola flite festival
  festvox-kallpc16k festvox-rablpc16k festvox-us-slt-hts festvox-kdlpc16k festvox-don
  festvox-italp16k festvox-itapc16k festvox-ellpc11k festvox-ru
  festvox-czech-dita festvox-czech-machac festvox-czech-ph festvox-czech-krb
  libttspico-utils rhvoice rhvoice-english rhvoice-russian rhvoice-polish rhvoice-esperanto
  rhvoice-brazilian-portuguese
  fortune-mod fortunes fortunes-min fortunes-de
  fortunes-es fortunes-it fortunes-pl fortunes-ru fortunes-br fortunes-cs fortunes-eo
  chromium chromium-driver"
for v in $MBROLA_VOICES; do PACKAGES="$PACKAGES mbrola-$v"; done

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then echo "install-system-deps: all packages present"; exit 0; fi

# MBROLA voices, RHVoice and pico are in contrib/non-free: enable those components.
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  $SUDO sed -i -E '/^Components:/{/contrib/!s/$/ contrib/;/non-free( |$)/!s/$/ non-free/}' \
    /etc/apt/sources.list.d/debian.sources
elif [ -f /etc/apt/sources.list ]; then
  $SUDO sed -i -E '/^deb /{/contrib/!s/$/ contrib/;/non-free( |$)/!s/$/ non-free/}' /etc/apt/sources.list
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Packages that a given release lacks are dropped rather than failing the whole install.
available=""
for p in $missing; do
  if apt-cache show "$p" >/dev/null 2>&1; then available="$available $p"; else
    echo "install-system-deps: package $p not available here, skipping" >&2; fi
done
$SUDO apt-get install -y -qq --no-install-recommends $available
echo "install-system-deps: installed$available"
