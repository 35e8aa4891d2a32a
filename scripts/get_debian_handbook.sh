#!/usr/bin/env bash
# Fetch the Debian Administrator's Handbook (HTML) used by the benchmarks.
#
# Usage: scripts/get_debian_handbook.sh [DEST]        (default DEST: benchmarks/.corpus/)
#
# Source: the Debian package `debian-handbook` (tested with 11.20220922, bookworm), fetched
# with `apt-get download` (no root needed for the download itself; `apt-get update` is run
# first when the package is unknown to apt).  Licence: GPL-2.0+ or CC-BY-SA-3.0, see
# benchmarks/data/LICENSE.md.
#
# Layout inside the .deb (after `dpkg -x`):
#   usr/share/doc/debian-handbook/copyright           DEP-5 copyright file (copied to DEST/copyright)
#   usr/share/doc/debian-handbook/html/<lang>/        one book per language, 26 languages
#                                                     (ar-MA ... en-US ... zh-CN, zh-TW)
#   usr/share/doc/debian-handbook/html/en-US/
#       index.html                                    table of contents
#       <chapter>.html                                one file per chapter intro, e.g. apt.html,
#                                                     packaging-system.html, network-services.html
#       sect.<id>.html                                one file per section, e.g. sect.apt-get.html
#       images/, Common_Content/{css,images}/         figures and stylesheet (not needed for QA)
#   The zh-CN book has exactly the same 127 .html file names as en-US (translated content).
#
# Result:
#   DEST/en-US/*.html, DEST/zh-CN/*.html   (same relative names as in the package; these are
#                                           the `source` paths used by benchmarks/data/debian_qa.jsonl)
#   DEST/copyright, DEST/VERSION
# Images and Common_Content are skipped: the corpus is for text retrieval only (~6 MB).
#
# Idempotent: exits early when DEST/en-US/index.html and DEST/zh-CN/index.html already exist
# (pass FORCE=1 in the environment to fetch again).  Never commit DEST: benchmarks/.corpus/ is
# git-ignored.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO_ROOT/benchmarks/.corpus}"
LANGS=(en-US zh-CN)
PKG=debian-handbook

if [[ "${FORCE:-0}" != "1" && -f "$DEST/en-US/index.html" && -f "$DEST/zh-CN/index.html" ]]; then
    echo "debian-handbook already present in $DEST (FORCE=1 to refetch)"
    exit 0
fi

for tool in apt-get dpkg; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (needs a Debian/Ubuntu host)" >&2; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"  # let the _apt sandbox user write the .deb when running as root

cd "$TMP"
if ! apt-get download "$PKG" >/dev/null 2>"$TMP/err"; then
    echo "apt-get download failed, running apt-get update first" >&2
    apt-get update >/dev/null
    apt-get download "$PKG" >/dev/null
fi
DEB="$(ls "$TMP"/${PKG}_*.deb | head -n1)"
dpkg -x "$DEB" "$TMP/x"
SRC="$TMP/x/usr/share/doc/$PKG"

mkdir -p "$DEST"
for lang in "${LANGS[@]}"; do
    [[ -d "$SRC/html/$lang" ]] || { echo "error: $lang book missing from $DEB" >&2; exit 1; }
    rm -rf "$DEST/$lang.tmp"
    mkdir -p "$DEST/$lang.tmp"
    cp "$SRC/html/$lang"/*.html "$DEST/$lang.tmp/"
    rm -rf "$DEST/$lang"
    mv "$DEST/$lang.tmp" "$DEST/$lang"
done
cp "$SRC/copyright" "$DEST/copyright"
# self-ignoring folder, in case the repository .gitignore lacks benchmarks/.corpus/
printf '*\n' > "$DEST/.gitignore"
dpkg-deb -f "$DEB" Version > "$DEST/VERSION"
echo "debian-handbook $(cat "$DEST/VERSION"): $(ls "$DEST/en-US" | wc -l) en-US + $(ls "$DEST/zh-CN" | wc -l) zh-CN pages in $DEST"
