#!/bin/bash
# Build guest images from Debian packages: bash os-image/build.sh [tiny|tiny-arm64|debian|cloud|all]
# Outputs (stable paths): .cache/out/tiny/, .cache/out/tiny-arm64/, .cache/out/debian/ (OCI layouts), .cache/out/cloud.qcow2.
# An image is rebuilt only when the hash of its recipe files differs from out/<name>.hash.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$HERE/.cache
OUT=$CACHE/out
export HERE CACHE OUT
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root (debootstrap and device nodes need it): sudo bash $0 $*"
case ${1:-all} in
tiny | tiny-arm64 | debian | cloud) images=("$1") ;;
all) images=(tiny tiny-arm64 debian cloud) ;;
*) die "unknown image '$1'; use tiny, tiny-arm64, debian, cloud or all" ;;
esac

output_of() { case $1 in cloud) echo "$OUT/cloud.qcow2" ;; *) echo "$OUT/$1" ;; esac; }
# recipe_of NAME is the recipe directory; tiny-arm64 is the tiny recipe with ARCH=arm64.
recipe_of() { echo "${1%-arm64}"; }

# recipe_hash NAME hashes every file that shapes the image (shared helpers + its own recipe).
recipe_hash() {
	local files=("$HERE/lib.sh" "$HERE/build.sh")
	[[ $1 != cloud ]] && files+=("$HERE/mkoci")
	(cd "$HERE" && find "${files[@]#"$HERE"/}" "$(recipe_of "$1")" -type f -print0 | sort -z |
		xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

host_tools() {
	need_tools dpkg-deb:dpkg apt-get:apt go:golang-go sha256sum:coreutils
	case $1 in
	tiny | tiny-arm64) need_tools cpio:cpio gzip:gzip depmod:kmod ;;
	debian) need_tools debootstrap:debootstrap depmod:kmod ;;
	cloud) need_tools debootstrap:debootstrap mkfs.ext4:e2fsprogs mkfs.fat:dosfstools mcopy:mtools \
		grub-mkimage:grub-common /usr/lib/grub/x86_64-efi/linux.mod:grub-efi-amd64-bin sfdisk:fdisk \
		qemu-img:qemu-utils /usr/share/OVMF/OVMF_CODE.fd:ovmf ;;
	esac
}

mkdir -p "$OUT"
summary=()
for img in "${images[@]}"; do
	out=$(output_of "$img")
	hash=$(recipe_hash "$img")
	start=$SECONDS
	if [[ -e $out && -f $OUT/$img.hash && $(cat "$OUT/$img.hash") == "$hash" ]]; then
		log "$img: up to date"
	else
		host_tools "$img"
		log "$img: building"
		rm -f "$OUT/$img.hash"
		arch=amd64
		[[ $img == *-arm64 ]] && arch=arm64
		ARCH=$arch bash "$HERE/$(recipe_of "$img")/build.sh" || die "$img build failed"
		echo "$hash" >"$OUT/$img.hash"
	fi
	size=$(du -sh "$out" | cut -f1)
	summary+=("$(printf '%-7s %s %s %ss' "$img" "$out" "$size" $((SECONDS - start)))")
done
printf '%s\n' "${summary[@]}"
