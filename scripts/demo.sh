#!/usr/bin/env bash
# The demo: boot the built-in `tiny` guest image with `cocoon vm run`, show its console, stop it
# and remove it. Uses a throwaway root so it never touches /var/lib/cocoon.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/cocoon
layout=os-image/.cache/out/tiny
[ -x "$bin" ] || { echo "demo: $bin missing: run make build" >&2; exit 1; }
[ -d "$layout" ] || { echo "demo: $layout missing: run make images" >&2; exit 1; }

work=$(mktemp -d /tmp/cocoon-demo.XXXXXX)
mem=$(mktemp -d /dev/shm/cocoon-demo.XXXXXX)
cocoon() { "$bin" --root-dir "$work/root" --run-dir "$work/run" --log-dir "$work/log" "$@"; }
export COCOON_MEMORY_DIR=$mem
cleanup() { cocoon vm rm --force demo >/dev/null 2>&1 || true; rm -rf "$work" "$mem"; }
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "import the tiny image (an OCI layout: Debian cloud kernel + busybox)"
tar -C "$layout" -cf - . | cocoon image import tiny
cocoon image list

step "cocoon vm run --name demo --nics 0 --memory 512M tiny"
start=$(date +%s.%N)
cocoon vm run --name demo --nics 0 --memory 512M tiny
cocoon vm list

step "waiting for the guest's ready line"
log=$work/log/$(cocoon vm inspect demo | sed -n 's/^  "id": "\(.*\)",/\1/p')/console.log
for _ in $(seq 1 600); do
	grep -q COCOON-READY "$log" 2>/dev/null && break
	sleep 0.1
done
grep -a COCOON-READY "$log" || { echo "demo: no ready line; console log:" >&2; tail -50 "$log" >&2; exit 1; }
awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "ready %.1f s after vm run\n", e - s }'

step "cocoon vm console demo   (typing: uname -r; hostname; then ^] . to detach)"
{ sleep 1; printf 'uname -r; hostname; cat /proc/cmdline\n'; sleep 2; printf '\035.'; } | cocoon vm console demo || true

step "cocoon vm stop demo   (ACPI power button)"
time cocoon vm stop demo
cocoon vm list

step "cocoon vm rm demo"
cocoon vm rm demo
cocoon vm list
