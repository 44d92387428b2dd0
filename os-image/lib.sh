# Shared helpers for the image recipes; sourced by build.sh and the per-image build.sh files.
# Expects HERE (os-image dir) and CACHE (os-image/.cache) to be set.

log() { printf '[os-image] %s\n' "$*" >&2; }
die() { printf '[os-image] error: %s\n' "$*" >&2; exit 1; }

# apt_install PKG... installs host packages, refreshing the package lists only if needed.
apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "$@" >&2 && return 0
	log "apt-get install $* failed; running apt-get update and retrying"
	apt-get update >&2 && apt-get install -y --no-install-recommends "$@" >&2
}

# need_tools CMD:PKG... installs PKG for every CMD (a command name or an absolute path) missing on the host.
need_tools() {
	local spec cmd pkg missing=()
	for spec in "$@"; do
		cmd=${spec%%:*} pkg=${spec#*:}
		if [[ $cmd == /* ]]; then [[ -e $cmd ]] && continue
		else command -v "$cmd" >/dev/null 2>&1 && continue
		fi
		missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	log "installing host packages: ${missing[*]}"
	apt_install "${missing[@]}" || die "cannot install ${missing[*]}; install them with apt-get and retry"
}

# debian_mirror prints the first configured Debian archive URI serving bookworm.
debian_mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		# deb822 stanzas: remember URIs, print it when the same stanza lists the bookworm suite.
		uri=$(awk '/^[[:space:]]*$/{u=""} /^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm" && u!=""){print u; exit}}' "$f")
		[[ -n $uri ]] && { echo "$uri"; return 0; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		uri=$(awk '$1=="deb" {u=$2; s=$3; if ($2 ~ /^\[/) {u=$3; s=$4}; if (s=="bookworm") {print u; exit}}' "$f")
		[[ -n $uri ]] && { echo "$uri"; return 0; }
	done
	die "no Debian bookworm mirror in /etc/apt/sources.list{,.d}; add one (e.g. deb http://deb.debian.org/debian bookworm main)"
}

# deb_path PKG prints the path of PKG's candidate .deb in the cache, downloading it if absent.
deb_path() {
	local pkg=$1 dir=$CACHE/debs uri file
	mkdir -p "$dir"
	uri=$(apt-get download --print-uris "$pkg" 2>/dev/null | head -n1) || true
	if [[ -z $uri ]]; then
		log "package $pkg unknown to apt; running apt-get update"
		apt-get update >&2 || die "apt-get update failed"
		uri=$(apt-get download --print-uris "$pkg" | head -n1) || true
		[[ -n $uri ]] || die "package $pkg not found in the configured Debian mirror"
	fi
	file=$(awk '{print $2}' <<<"$uri")
	if [[ ! -s $dir/$file ]]; then
		log "downloading $file"
		(cd "$dir" && apt-get download "$pkg" >&2 2>/dev/null) || die "apt-get download $pkg failed"
	fi
	echo "$dir/$file"
}

# kernel_pkg [ARCH] prints the versioned package behind Debian's cloud kernel metapackage for ARCH (amd64).
kernel_pkg() {
	local meta=linux-image-cloud-${1:-amd64} p
	p=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	if [[ -z $p ]]; then
		apt-get update >&2 || die "apt-get update failed"
		p=$(apt-cache depends "$meta" | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	fi
	[[ -n $p ]] || die "$meta not found in the configured Debian mirror"
	echo "${p%%:*}" # apt-cache names foreign packages PKG:ARCH
}

# foreign_arch ARCH lets apt fetch ARCH packages when ARCH is not the host's (for apt-get download).
foreign_arch() {
	[[ $1 == "$(dpkg --print-architecture)" ]] && return 0
	dpkg --print-foreign-architectures | grep -qx "$1" && return 0
	log "dpkg --add-architecture $1; apt-get update"
	dpkg --add-architecture "$1" && apt-get update >&2 || die "cannot enable $1 packages in apt"
}

# mkoci runs the OCI layout writer, built once into the cache.
mkoci() {
	local bin=$CACHE/bin/mkoci
	if [[ ! -x $bin || -n $(find "$HERE/mkoci" -newer "$bin" -name '*.go') ]]; then
		mkdir -p "$CACHE/bin"
		(cd "$HERE/.." && go build -o "$bin" ./os-image/mkoci) || die "building os-image/mkoci failed"
	fi
	"$bin" "$@"
}

# umount_tree unmounts everything at or below DIR (debootstrap leaves proc/sys mounted on failure).
umount_tree() {
	local dir m
	dir=$(realpath -m "$1")
	awk -v d="$dir" '$2==d || index($2, d"/")==1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}

# debootstrap_base DIR INCLUDE: bookworm minbase, reused while the package list and mirror stay.
debootstrap_base() {
	local dir=$1 include=$2 mirror key
	mirror=$(debian_mirror)
	key=$(echo "bookworm $mirror $include" | sha256sum | cut -d' ' -f1)
	if [[ -f $dir.key && $(cat "$dir.key") == "$key" && -d $dir ]]; then
		log "reusing debootstrap tree $dir"
		return 0
	fi
	umount_tree "$dir"
	rm -rf "$dir" "$dir.key"
	mkdir -p "$CACHE/debootstrap"
	log "debootstrap bookworm from $mirror"
	debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" --include="$include" \
		bookworm "$dir" "$mirror" >&2 || { umount_tree "$dir"; die "debootstrap failed"; }
	umount_tree "$dir"
	echo "$key" >"$dir.key"
}

# in_root DIR CMD... runs CMD chrooted with /proc, /sys and /dev available.
in_root() {
	local dir=$1
	shift
	mount -t proc proc "$dir/proc"
	mount -t sysfs sysfs "$dir/sys"
	mount --bind /dev "$dir/dev"
	local rc=0
	chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
	umount "$dir/dev" "$dir/sys" "$dir/proc"
	return $rc
}
