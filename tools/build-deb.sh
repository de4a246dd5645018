#!/usr/bin/env bash
# Builds the Debian package from this checkout and checks it with lintian.
#   tools/build-deb.sh            -> dist/tasad_<version>_<arch>.deb
# Installs the build dependencies (Debian 12 packages) when run as root or with sudo.
# Uncommitted changes are included: the tree is copied as it is (tracked and untracked files,
# without what .gitignore excludes), with packaging/debian as debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=${TASAD_DEB_OUT:-$top/dist}
if [ "${TASAD_SKIP_DEPS:-0}" != 1 ]; then
  tools/install-deps.sh
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/tasad
mkdir "$src"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$top" ls-files -z --cached --others --exclude-standard \
    | (cd "$top" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
    | tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
else
  tar -C "$top" --exclude='./build*' --exclude=./dist -cf - . | tar -C "$src" -xf -
fi
rm -rf "$src/debian"
cp -a packaging/debian "$src/debian"
(cd "$src" && dpkg-checkbuilddeps && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
  tail -60 "$work/build.log"; echo "build-deb: dpkg-buildpackage failed (log above)" >&2; exit 1; }
mkdir -p "$out"
debs=("$work"/tasad_*.deb)
cp "${debs[@]}" "$out/"
changes=("$work"/tasad_*.changes)
echo "built: $(cd "$out" && ls -1 "${debs[@]##*/}" | tr '\n' ' ')in $out"
# No errors and no warnings; info-level tags are printed, overrides are in
# packaging/debian/tasad.lintian-overrides with their reasons.
lintian --fail-on error,warning --info --display-info "${changes[0]}"
echo "lintian: no errors, no warnings"
