#!/usr/bin/env bash
# Fetch the real, openly licensed PDF manuals used by the PDF benchmarks and the second dev QA set.
#
# Usage: scripts/get_pdf_corpus.sh [DEST]        (default DEST: benchmarks/.corpus/pdf/)
#
# Source: Debian packages fetched with `apt-get download` (no root needed for the download):
#   maint-guide           Debian New Maintainers' Guide, English        -> maint-guide.en.pdf     (63 pages)
#   maint-guide-zh-cn     the same guide, Simplified Chinese            -> maint-guide.zh-cn.pdf  (63 pages)
#   debian-faq            The Debian GNU/Linux FAQ, English (gzipped)   -> debian-faq.en.pdf      (73 pages)
#   debian-faq-zh-cn      the FAQ, Simplified Chinese (gzipped; the PDF is a one-page stub saying the
#                         Chinese PDF is not available)                 -> debian-faq.zh-cn.pdf   (1 page)
#   developers-reference  Debian Developer's Reference, English         -> developers-reference.pdf (114 pages)
#   debian-edu-doc-zh-cn  Debian Edu 12 Bookworm manual, Simplified Chinese only (its English original
#                         is not fetched: English questions about it have their answer only in Chinese)
#                                                                       -> debian-edu-manual.zh-cn.pdf (98 pages)
# Licences: see benchmarks/data/LICENSE.md (each package's copyright file is copied to DEST/copyright.<pkg>).
# Idempotent: exits early when every PDF is present (FORCE=1 to refetch). DEST is git-ignored.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO_ROOT/benchmarks/.corpus/pdf}"
PKGS=(maint-guide maint-guide-zh-cn debian-faq debian-faq-zh-cn developers-reference debian-edu-doc-zh-cn)
FILES=(maint-guide.en.pdf maint-guide.zh-cn.pdf debian-faq.en.pdf debian-faq.zh-cn.pdf developers-reference.pdf
       debian-edu-manual.zh-cn.pdf)

have_all=1
for f in "${FILES[@]}"; do [[ -f "$DEST/$f" ]] || have_all=0; done
if [[ "${FORCE:-0}" != "1" && $have_all == 1 ]]; then
    echo "PDF corpus already present in $DEST (FORCE=1 to refetch)"
    exit 0
fi
for tool in apt-get dpkg; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (needs a Debian/Ubuntu host)" >&2; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"
cd "$TMP"
if ! apt-get download "${PKGS[@]}" >/dev/null 2>"$TMP/err"; then
    echo "apt-get download failed, running apt-get update first" >&2
    apt-get update >/dev/null
    apt-get download "${PKGS[@]}" >/dev/null
fi
for deb in "$TMP"/*.deb; do dpkg -x "$deb" "$TMP/x"; done
mkdir -p "$DEST"
X="$TMP/x/usr/share"
cp "$X/doc/maint-guide/maint-guide.en.pdf" "$DEST/"
cp "$X/doc/maint-guide-zh-cn/maint-guide.zh-cn.pdf" "$DEST/"
zcat "$X/doc/debian/FAQ/debian-faq.en.pdf.gz" > "$DEST/debian-faq.en.pdf"
zcat "$X/doc/debian/FAQ/debian-faq.zh-cn.pdf.gz" > "$DEST/debian-faq.zh-cn.pdf"
cp "$X/developers-reference/developers-reference.pdf" "$DEST/"
cp "$X/doc/debian-edu-doc-zh-cn/debian-edu-bookworm-manual.pdf" "$DEST/debian-edu-manual.zh-cn.pdf"
for pkg in "${PKGS[@]}"; do
    [[ -f "$X/doc/$pkg/copyright" ]] && cp "$X/doc/$pkg/copyright" "$DEST/copyright.$pkg"
done
printf '*\n' > "$DEST/.gitignore"
for deb in "$TMP"/*.deb; do dpkg-deb -f "$deb" Package Version | paste -sd' '; done > "$DEST/VERSIONS"
echo "PDF corpus in $DEST:"; ls -la "$DEST"/*.pdf
