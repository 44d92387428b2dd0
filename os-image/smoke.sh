#!/bin/bash
# Boot a built image under bare QEMU (TCG) and check it follows the guest contract:
#   bash os-image/smoke.sh tiny|debian [--hvc] [--twice]
#       OCI image: EROFS layers + ext4 COW, static ip= on eth0 (user-mode NIC), DHCP on eth1;
#       --hvc uses console=hvc0 (virtio-console, as on Cloud Hypervisor); --twice boots a second
#       time on the same COW disk.
#   bash os-image/smoke.sh cloud                 UEFI qcow2 + NoCloud seed
# Waits for the ready line / login prompt, checks the console, then powers off via QMP.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$HERE/.cache/out
name=${1:?usage: smoke.sh tiny|debian|cloud [--hvc] [--twice]}
shift
console=ttyS0 boots=1
for opt in "$@"; do
	case $opt in
	--hvc) console=hvc0 ;;
	--twice) boots=2 ;;
	*) echo "unknown option '$opt'; use --hvc or --twice" >&2; exit 2 ;;
	esac
done
host=smoke-$name
work=$(mktemp -d /tmp/cocoon-smoke-"$name".XXXXXX)
# SMOKE_KEEP=1 keeps the work dir (console.log, qemu.out) for inspection.
[[ -n ${SMOKE_KEEP:-} ]] || trap 'rm -rf "$work"' EXIT

qemu=(qemu-system-x86_64 -accel tcg -machine q35 -m 1G -smp 2 -nodefaults -display none
	-chardev "socket,id=con,path=$work/console.sock,server=on,wait=off"
	-qmp "unix:$work/qmp.sock,server=on,wait=off"
	-netdev user,id=n0 -device virtio-net-pci,netdev=n0,mac=52:54:00:c0:c0:01)
if [[ $console == hvc0 ]]; then
	qemu+=(-device virtio-serial-pci -device virtconsole,chardev=con)
else
	qemu+=(-serial chardev:con)
fi

oci_boot() {
	local layout=$OUT/$name i=0 digest serials=() kernel initrd
	[[ -f $layout/index.json ]] || { echo "no OCI layout at $layout; run build.sh $name" >&2; exit 1; }
	manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$layout/index.json")
	for digest in $(python3 -c 'import json,sys; [print(l["digest"].split(":")[1]) for l in json.load(open(sys.argv[1]))["layers"]]' "$layout/blobs/sha256/$manifest"); do
		mkdir -p "$work/layer$i"
		tar -xzf "$layout/blobs/sha256/$digest" -C "$work/layer$i" --numeric-owner -p
		mkfs.erofs --quiet "$work/layer$i.erofs" "$work/layer$i" >/dev/null
		qemu+=(-drive "file=$work/layer$i.erofs,if=none,id=l$i,format=raw,readonly=on"
			-device "virtio-blk-pci,drive=l$i,serial=cocoon-layer$i")
		serials=("cocoon-layer$i" "${serials[@]}")
		i=$((i + 1))
	done
	kernel=$(ls "$work"/layer*/boot/vmlinuz-* | head -n1)
	initrd=$(ls "$work"/layer*/boot/initrd.img-* | head -n1)
	truncate -s 1G "$work/cow.raw"
	mkfs.ext4 -q -F "$work/cow.raw"
	qemu+=(-drive "file=$work/cow.raw,if=none,id=cow,format=raw"
		-device virtio-blk-pci,drive=cow,serial=cocoon-cow
		-netdev user,id=n1 -device virtio-net-pci,netdev=n1,mac=52:54:00:c0:c0:02
		-kernel "$kernel" -initrd "$initrd"
		-append "console=$console loglevel=3 boot=cocoon-overlay cocoon.layers=$(IFS=,; echo "${serials[*]}") cocoon.cow=cocoon-cow rw net.ifnames=0 cocoon.hostname=$host ip=10.0.2.15::10.0.2.2:255.255.255.0:$host:eth0:off:10.0.2.3")
	export SMOKE_IPS=10.0.2.15,10.0.2.15
}

cloud_boot() {
	local img=$OUT/cloud.qcow2
	[[ -f $img ]] || { echo "no $img; run build.sh cloud" >&2; exit 1; }
	qemu-img create -q -f qcow2 -F qcow2 -b "$img" "$work/disk.qcow2" 10G
	cp /usr/share/OVMF/OVMF_VARS.fd "$work/vars.fd"
	printf 'instance-id: smoke-%s\nlocal-hostname: %s\n' "$RANDOM" "$host" >"$work/meta-data"
	printf '#cloud-config\nchpasswd: {expire: false, list: ["root:cocoon"]}\n' >"$work/user-data"
	mkfs.fat -C -n CIDATA "$work/cidata.img" 1024 >/dev/null
	mcopy -i "$work/cidata.img" "$work/meta-data" "$work/user-data" ::
	qemu+=(-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd
		-drive "if=pflash,format=raw,file=$work/vars.fd"
		-drive "file=$work/disk.qcow2,if=none,id=root,format=qcow2" -device virtio-blk-pci,drive=root
		-drive "file=$work/cidata.img,if=none,id=seed,format=raw,readonly=on" -device virtio-blk-pci,drive=seed)
}

case $name in
tiny | debian) oci_boot ;;
cloud) cloud_boot ;;
*) echo "unknown image '$name'; use tiny, debian or cloud" >&2; exit 2 ;;
esac
for ((boot = 1; boot <= boots; boot++)); do
	echo "== $name boot $boot (console=$console)"
	rm -f "$work/console.sock" "$work/qmp.sock"
	SMOKE_HOSTNAME=$host python3 "$HERE/smoke_driver.py" "$work" "$name" -- "${qemu[@]}"
done
