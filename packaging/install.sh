#!/usr/bin/env bash
# Install gitproc: binaries, systemd unit, example configuration and state directory.
#
# Idempotent: running it again gives the same tree. It upgrades the binary and the unit,
# and never overwrites an existing /etc/gitproc/gitproc.toml (the operator's config).
#
#   packaging/install.sh [--root DIR] [--bin PATH] [--engine PATH]
#
#   --root DIR     install under DIR instead of / (also: DESTDIR=DIR); for packaging and tests
#   --bin PATH     the gitproc front to install (default: target/release/gitproc, built by
#                  `cargo build --release`)
#   --engine PATH  the gitprocd engine the front runs for daemon/check/plan (default:
#                  gitprocd beside --bin); both go to /usr/bin
#
# `systemctl daemon-reload` runs only when installing to / on a machine booted with systemd.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(dirname "$here")"

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

root="${DESTDIR:-}"
bin="$repo_root/target/release/gitproc"
engine=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --root) [ "$#" -ge 2 ] || die "--root needs a directory"; root="$2"; shift 2 ;;
        --root=*) root="${1#--root=}"; shift ;;
        --bin) [ "$#" -ge 2 ] || die "--bin needs a path"; bin="$2"; shift 2 ;;
        --bin=*) bin="${1#--bin=}"; shift ;;
        --engine) [ "$#" -ge 2 ] || die "--engine needs a path"; engine="$2"; shift 2 ;;
        --engine=*) engine="${1#--engine=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; echo "install.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

# Normalise the root: "" and "/" both mean the running system; no trailing slash.
root="${root%/}"
[ -f "$bin" ] || die "binary '$bin' not found: build it with 'cargo build --release' or pass --bin PATH"
engine="${engine:-$(dirname "$bin")/gitprocd}"
[ -f "$engine" ] || die "engine '$engine' not found: 'cargo build --release' builds it beside gitproc, or pass --engine PATH"
[ -f "$here/gitproc.service" ] || die "'$here/gitproc.service' is missing (run the script from a gitproc checkout)"
[ -f "$here/gitproc.toml" ] || die "'$here/gitproc.toml' is missing (run the script from a gitproc checkout)"
if [ -n "$root" ]; then
    mkdir -p "$root" || die "cannot create root directory '$root'"
fi

# Copy $1 to $2 with mode $3 through a temporary file and a rename, so a running binary
# ("text file busy") is replaced cleanly and a reader never sees a half-written file.
put() {
    local src="$1" dst="$2" mode="$3" tmp
    install -d -m 0755 "$(dirname "$dst")"
    tmp="$(dirname "$dst")/.$(basename "$dst").install-tmp"
    rm -f "$tmp"
    install -m "$mode" "$src" "$tmp"
    mv -f "$tmp" "$dst"
}

put "$bin" "$root/usr/bin/gitproc" 0755
echo "installed $root/usr/bin/gitproc"
put "$engine" "$root/usr/bin/gitprocd" 0755
echo "installed $root/usr/bin/gitprocd"

put "$here/gitproc.service" "$root/lib/systemd/system/gitproc.service" 0644
echo "installed $root/lib/systemd/system/gitproc.service"

install -d -m 0755 "$root/etc/gitproc"
if [ -e "$root/etc/gitproc/gitproc.toml" ]; then
    echo "kept existing $root/etc/gitproc/gitproc.toml (the example is $here/gitproc.toml)"
else
    put "$here/gitproc.toml" "$root/etc/gitproc/gitproc.toml" 0644
    echo "installed $root/etc/gitproc/gitproc.toml: set 'repo' in it"
fi

# State, control socket and logs: only the daemon's user may read them.
install -d -m 0700 "$root/var/lib/gitproc"
chmod 0700 "$root/var/lib/gitproc"
echo "created $root/var/lib/gitproc (mode 0700)"

if [ -z "$root" ] && [ -d /run/systemd/system ] \
    && [ "$(cat /proc/1/comm 2>/dev/null || true)" = systemd ]; then
    systemctl daemon-reload
    echo "systemd reloaded; start with: systemctl enable --now gitproc"
elif [ -z "$root" ]; then
    echo "systemd is not PID 1 here: run '/usr/bin/gitproc daemon --config /etc/gitproc/gitproc.toml' yourself"
fi
