#!/bin/bash
# tiny: Debian cloud kernel + busybox initramfs (boot layer) and a busybox userland (rootfs layer).
# ARCH (amd64 or arm64, default amd64) picks the Debian architecture; arm64 goes to out/tiny-arm64.
set -euo pipefail
. "$HERE/lib.sh"
ARCH=${ARCH:-amd64}
NAME=tiny
[[ $ARCH == amd64 ]] || NAME=tiny-$ARCH
RECIPE=$HERE/tiny
WORK=$CACHE/work/$NAME
MODULES="virtio_pci virtio_mmio virtio_console virtio_blk virtio_net virtio_balloon virtio_rng
	erofs overlay button evdev"

rm -rf "$WORK"
mkdir -p "$WORK"
foreign_arch "$ARCH"
kdeb=$(deb_path "$(kernel_pkg "$ARCH")":"$ARCH")
bbdeb=$(deb_path busybox-static:"$ARCH")
dpkg-deb -x "$kdeb" "$WORK/kernel"
dpkg-deb -x "$bbdeb" "$WORK/busybox"
kver=$(ls "$WORK/kernel/lib/modules")
bb=$WORK/busybox/bin/busybox
# The applet list comes from the host's busybox (same Debian build config), which can run here.
lsbb=$bb
if [[ $ARCH != "$(dpkg --print-architecture)" ]]; then
	dpkg-deb -x "$(deb_path busybox-static)" "$WORK/busybox-host"
	lsbb=$WORK/busybox-host/bin/busybox
fi

# install_busybox ROOT puts busybox and a link for every applet into ROOT.
install_busybox() {
	local root=$1 applet
	install -D -m 0755 "$bb" "$root/bin/busybox"
	for applet in $("$lsbb" --list-full); do
		[[ $applet == bin/busybox ]] && continue
		mkdir -p "$root/$(dirname "$applet")"
		ln -sf /bin/busybox "$root/$applet"
	done
}

# initramfs: busybox, the modules the contract needs (with their dependencies) and /init.
ird=$WORK/initramfs
install_busybox "$ird"
mkdir -p "$ird"/{dev,proc,sys,run,newroot}
depmod -b "$WORK/kernel" "$kver"
mods=$(for m in $MODULES; do modprobe -d "$WORK/kernel" -S "$kver" --show-depends "$m"; done |
	awk '$1=="insmod" {print $2}' | sort -u)
for f in $mods; do
	install -D -m 0644 "$f" "$ird/${f#"$WORK/kernel/"}"
done
cp "$WORK/kernel/lib/modules/$kver"/modules.{builtin,builtin.modinfo,order} "$ird/lib/modules/$kver/"
depmod -b "$ird" "$kver"
install -m 0755 "$RECIPE/initramfs/init" "$ird/init"

boot=$WORK/layer-boot
install -D -m 0644 "$WORK/kernel/boot/vmlinuz-$kver" "$boot/boot/vmlinuz-$kver"
# Fixed mtimes (cpio --reproducible only fixes inode numbers) keep rebuilds byte-identical.
find "$ird" -exec touch -h -d @1704067200 {} +
(cd "$ird" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
	gzip -9n >"$boot/boot/initrd.img-$kver"

# rootfs: busybox userland plus the recipe's /etc and helper scripts.
root=$WORK/layer-rootfs
install_busybox "$root"
mkdir -p "$root"/{dev,proc,sys,run,tmp,root,var/log,.cocoon}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp -a "$RECIPE/rootfs/." "$root/"
chown -R 0:0 "$boot" "$root"

mkoci -out "$OUT/$NAME" -ref "$NAME" -arch "$ARCH" -layer "$boot" -layer "$root"
rm -rf "$WORK"
