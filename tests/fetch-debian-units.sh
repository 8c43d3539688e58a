#!/usr/bin/env bash
# Downloads Debian 12 packages that ship .service files and extracts only those files into
# target/debian-units/<package>/ (never committed: they are Debian's files, not ours).
# Exits non-zero when a package cannot be downloaded or yields no unit; .ci/run then fails
# (under CI=true the Debian units test fails too rather than skip).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/debian-units
pkgs=(nginx-common redis-server memcached openssh-server cron rsyslog postgresql-common haproxy chrony)
if [ -f "$out/.done" ]; then exit 0; fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "${pkgs[@]}" >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null 2>&1 || true
  (cd "$work" && apt-get download "${pkgs[@]}" >/dev/null)
}
for deb in "$work"/*.deb; do
  name=$(dpkg-deb -f "$deb" Package)
  dpkg-deb -x "$deb" "$work/x-$name"
  mkdir -p "$out/$name"
  # Units go to the top of the package's directory (like a unit directory); drop-ins keep
  # their NAME.service.d/ directory so they still apply to their unit.
  find "$work/x-$name" -name '*.service' \( -type f -o -type l \) -exec cp -P {} "$out/$name/" \;
  find "$work/x-$name" -path '*.service.d/*.conf' \( -type f -o -type l \) -print0 |
    while IFS= read -r -d '' conf; do
      dir=$(basename "$(dirname "$conf")")
      mkdir -p "$out/$name/$dir"
      cp -P "$conf" "$out/$name/$dir/"
    done
done
# A package that yields no unit would make the test pass on less than it claims.
for pkg in "${pkgs[@]}"; do
  if ! compgen -G "$out/$pkg/*.service" >/dev/null; then
    echo "error: no .service file extracted from Debian package $pkg" >&2
    exit 1
  fi
done
touch "$out/.done"
