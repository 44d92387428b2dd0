#!/bin/bash
# debian: Debian 12 with systemd (debootstrap minbase), booted by initramfs-tools through the
# cocoon-overlay boot script. Two layers: the base OS, and /boot plus the cocoon config files.
set -euo pipefail
. "$HERE/lib.sh"
RECIPE=$HERE/debian
WORK=$CACHE/work/debian
BASE=$CACHE/stage/debian-base
INCLUDE=systemd,systemd-sysv,dbus,udev,iproute2,kmod,initramfs-tools,busybox,linux-base,zstd

cleanup() { umount_tree "$WORK"; }
trap cleanup EXIT

debootstrap_base "$BASE" "$INCLUDE"
umount_tree "$WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
root=$WORK/rootfs
cp -a "$BASE" "$root"

# Config first, so the kernel's postinst builds the initramfs once, with the cocoon scripts.
cp -a "$RECIPE/files/." "$root/"
chown -R 0:0 "$root/etc"
for deb in "$(deb_path "$(kernel_pkg)")" "$(deb_path linux-image-cloud-amd64)"; do
	cp "$deb" "$root/tmp/"
done
in_root "$root" sh -c 'dpkg -i /tmp/*.deb && rm -f /tmp/*.deb' >&2
in_root "$root" sh -c '
	set -e
	echo root:cocoon | chpasswd
	systemctl enable systemd-networkd.service
	# cocoon-network owns ip= (the generator would write a second, by-name config from it);
	# e2scrub_reap only slows every boot of a throwaway COW.
	systemctl mask systemd-network-generator.service e2scrub_reap.service
	systemctl mask systemd-networkd-wait-online.service systemd-fsck-root.service \
		systemd-remount-fs.service "systemd-fsck@.service"
	apt-get clean
' >&2
[[ -s $root/boot/initrd.img-$(ls "$root/lib/modules") ]] || die "kernel install produced no initramfs"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/*

# Second layer: /boot and the cocoon config, moved out of the base tree (parents keep their modes).
cfg=$WORK/layer-cocoon
mkdir -p "$cfg"
paths=(boot $(cd "$RECIPE/files" && find . -type f | sed 's|^\./||' | sort))
(cd "$root" && cp -a --parents "${paths[@]}" "$cfg/" && rm -rf "${paths[@]}")

mkoci -out "$OUT/debian" -ref debian -layer "$root" -layer "$cfg"
rm -rf "$WORK"
