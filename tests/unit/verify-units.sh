#!/usr/bin/env bash
# systemd-analyze verify for every unit in units/, with @sbindir@ pointing at the built daemons.
# Any message at all (an unknown key, a bad value, a missing dependency) fails the test.
# Usage: verify-units.sh SOURCE_UNITS_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed"; exit 77
fi
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir "$t/sbin" "$t/units"
for d in worker scheduler results; do
  ln -s "$build/daemons/$d/tasad-$d" "$t/sbin/tasad-$d"
done
for f in "$src"/*.in; do
  sed "s|@sbindir@|$t/sbin|g" "$f" > "$t/units/$(basename "$f" .in)"
done
cp "$src"/*.socket "$src"/*.target "$t/units/"
cd "$t/units"
out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no ./*.service ./*.socket ./*.target 2>&1) || rc=$?
if [ -n "$out" ] || [ "${rc:-0}" -ne 0 ]; then
  printf '%s\n' "$out"; echo "FAIL: systemd-analyze verify (rc ${rc:-0})"; exit 1
fi
echo "ok: $(ls | tr '\n' ' ')verified"
