#!/usr/bin/env bash
# check.sh — the original Cocoon's host check, kept for its users: runs `cocoon doctor`.
#   check.sh [--fix] [--subnet=CIDR] [--json]
# COCOON_ROOT_DIR, COCOON_RUN_DIR, COCOON_LOG_DIR, COCOON_CNI_CONF_DIR and COCOON_CNI_BIN_DIR
# are honoured (cocoon reads them). --upgrade (download hypervisors, firmware and CNI plugins)
# is not supported: install Debian packages with scripts/deps.sh instead.
set -euo pipefail

cocoon=${COCOON_BIN:-}
if [ -z "$cocoon" ]; then
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	if [ -x "$here/../bin/cocoon" ]; then
		cocoon=$here/../bin/cocoon
	elif command -v cocoon >/dev/null; then
		cocoon=$(command -v cocoon)
	else
		echo "check.sh: cocoon not found: put it on PATH, build it (make build) or set COCOON_BIN" >&2
		exit 1
	fi
fi

args=()
for a in "$@"; do
	case "$a" in
	--fix) args+=(--fix) ;;
	--subnet=*) args+=(--subnet "${a#--subnet=}") ;;
	--json) args+=(--output json) ;;
	--upgrade)
		echo "check.sh: --upgrade is not supported: install packages with scripts/deps.sh, then run --fix" >&2
		exit 2
		;;
	-h | --help)
		sed -n '2,6p' "$0"
		exit 0
		;;
	*)
		echo "check.sh: unknown option $a (use --fix, --subnet=CIDR, --json)" >&2
		exit 2
		;;
	esac
done
exec "$cocoon" doctor "${args[@]}"
