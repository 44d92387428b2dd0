#!/bin/bash
# cloud: UEFI-bootable Debian 12 qcow2 with cloud-init (NoCloud). GPT: ESP (FAT, GRUB as the
# removable-media loader EFI/BOOT/BOOTX64.EFI) + ext4 root. Nothing is loop-mounted: the ESP is
# built with mtools, the root with mkfs.ext4 -d, and both are dd'ed into the partitioned disk.
set -euo pipefail
. "$HERE/lib.sh"
RECIPE=$HERE/cloud
WORK=$CACHE/work/cloud
BASE=$CACHE/stage/cloud-base
INCLUDE=systemd,systemd-sysv,systemd-resolved,dbus,udev,iproute2,kmod,initramfs-tools,linux-base,zstd,\
cloud-init,python3-cffi-backend,cloud-guest-utils,locales,openssh-server,ca-certificates,netbase,e2fsprogs
ESP_MIB=64
ROOT_MIB=2048

cleanup() { umount_tree "$WORK"; }
trap cleanup EXIT

debootstrap_base "$BASE" "$INCLUDE"
umount_tree "$WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
root=$WORK/rootfs
cp -a "$BASE" "$root"

root_uuid=$(cat /proc/sys/kernel/random/uuid)
cp -a "$RECIPE/files/." "$root/"
chown -R 0:0 "$root/etc"
printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$root_uuid" >"$root/etc/fstab"

# The kernel goes in after fstab and FSTYPE exist, so its initramfs can fsck the root.
for deb in "$(deb_path "$(kernel_pkg)")" "$(deb_path linux-image-cloud-amd64)"; do
	cp "$deb" "$root/tmp/"
done
in_root "$root" sh -c 'dpkg -i /tmp/*.deb && rm -f /tmp/*.deb' >&2
in_root "$root" sh -c '
	set -e
	echo "en_US.UTF-8 UTF-8" >/etc/locale.gen
	locale-gen
	update-locale LANG=en_US.UTF-8
	systemctl enable systemd-networkd.service systemd-resolved.service serial-getty@ttyS0.service
	# A VM without a NIC must not wait two minutes for "online".
	systemctl mask systemd-networkd-wait-online.service
	apt-get clean
' >&2
kver=$(ls "$root/lib/modules")
[[ -s $root/boot/initrd.img-$kver ]] || die "kernel install produced no initramfs"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/*

# GRUB: one EFI image with an embedded config that finds the root by UUID and boots at once.
cat >"$WORK/grub.cfg" <<CFG
search --no-floppy --fs-uuid --set=root $root_uuid
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
linux /vmlinuz root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200n8
initrd /initrd.img
boot
CFG
grub-mkimage -O x86_64-efi -o "$WORK/BOOTX64.EFI" -c "$WORK/grub.cfg" -p /EFI/BOOT \
	part_gpt part_msdos fat ext2 search search_fs_uuid normal linux gzio echo test \
	serial terminal efi_gop all_video boot configfile
mkfs.fat -F 32 -n ESP -C "$WORK/esp.img" $((ESP_MIB * 1024)) >/dev/null
mmd -i "$WORK/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$WORK/esp.img" "$WORK/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$root" "$WORK/root.img" "${ROOT_MIB}M"

# GPT: 1 MiB alignment, ESP then root, 1 MiB spare at the end for the backup table.
esp_start=2048 esp_sectors=$((ESP_MIB * 2048))
root_start=$((esp_start + esp_sectors)) root_sectors=$((ROOT_MIB * 2048))
truncate -s $(((root_start + root_sectors + 2048) * 512)) "$WORK/disk.raw"
sfdisk -q "$WORK/disk.raw" <<PART
label: gpt
start=$esp_start, size=$esp_sectors, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"
start=$root_start, size=$root_sectors, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
PART
dd if="$WORK/esp.img" of="$WORK/disk.raw" bs=512 seek=$esp_start conv=notrunc,sparse status=none
dd if="$WORK/root.img" of="$WORK/disk.raw" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
qemu-img convert -f raw -O qcow2 "$WORK/disk.raw" "$OUT/cloud.qcow2.tmp"
mv "$OUT/cloud.qcow2.tmp" "$OUT/cloud.qcow2"
rm -rf "$WORK"
