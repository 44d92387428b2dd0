#!/usr/bin/env bash
# Installs what Cocoon needs on a Debian/Ubuntu host (as root), only what is missing:
# the hypervisor and image tools, CNI plugins (also linked into /opt/cni/bin, the default
# --cni-bin-dir), and the Go modules. Safe to run again.
set -euo pipefail

packages=(
	qemu-system-x86 qemu-utils ovmf            # QEMU backend, qcow2 tools, UEFI firmware
	qemu-system-arm qemu-efi-aarch64           # arm64 guests (TCG on x86 hosts), their UEFI firmware
	containernetworking-plugins iproute2 iptables dnsmasq-base   # CNI + bridge/DHCP tests
	erofs-utils e2fsprogs xfsprogs dosfstools mtools             # disk images
	debootstrap busybox-static cpio zstd lz4 kmod fdisk gdisk grub-efi-amd64-bin   # guest image builds
	socat tar gzip ca-certificates python3-yaml iputils-ping util-linux
	tmux                                                         # console e2e in a real terminal emulator
	time                                                         # make bench: peak RSS of a command
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages ${missing[*]}: run this as root" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The default --cni-bin-dir is /opt/cni/bin (as upstream CNI); Debian installs into /usr/lib/cni.
if [ -d /usr/lib/cni ] && [ "$(id -u)" -eq 0 ]; then
	mkdir -p /opt/cni/bin
	for p in /usr/lib/cni/*; do
		[ -e "/opt/cni/bin/$(basename "$p")" ] || ln -s "$p" "/opt/cni/bin/$(basename "$p")"
	done
fi

# Each QEMU with O_DIRECT disks (aio=native) takes a 1024-event Linux AIO context: the default
# fs.aio-max-nr (65536) caps a host at ~64 running VMs, below the 100-clone density target.
if [ "$(id -u)" -eq 0 ] && [ "$(cat /proc/sys/fs/aio-max-nr 2>/dev/null || echo 0)" -lt 1048576 ]; then
	sysctl -q -w fs.aio-max-nr=1048576 || echo "deps: could not raise fs.aio-max-nr (max ~64 VMs with O_DIRECT disks)" >&2
fi

if ! command -v go >/dev/null; then
	echo "deps: Go 1.26+ is required to build (https://go.dev/dl); put it on PATH" >&2
	exit 1
fi
cd "$(dirname "$0")/.."
go mod download
