#!/bin/busybox sh
# /init of the hypervisor test guest: load the virtio and ACPI button drivers, wait for the
# devices named on the kernel command line, report them, then serve a shell on the console.
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /tmp /etc/acpi/PWRF /var/log /var/run
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_pci virtio_blk virtio_net virtio_balloon virtio_rng button evdev; do
	modprobe "$m" || echo "HVTEST-ERROR modprobe $m"
done

# The ACPI power button (QMP system_powerdown) powers the guest off.
printf '#!/bin/sh\necho %s >/dev/console\nsync\nexec poweroff -f\n' HVTEST-POWERBUTTON >/etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
acpid -c /etc/acpi || echo "HVTEST-ERROR acpid"

disks=0 nics=0
for p in $(cat /proc/cmdline); do
	case $p in
	hvtest.disks=*) disks=${p#hvtest.disks=} ;;
	hvtest.nics=*) nics=${p#hvtest.nics=} ;;
	esac
done
count() { n=0; for f in "$@"; do [ -e "$f" ] && n=$((n + 1)); done; echo $n; }
i=0
while [ $i -lt 100 ]; do
	[ "$(count /sys/block/vd*)" -ge "$disks" ] && [ "$(count /sys/class/net/eth*)" -ge "$nics" ] && break
	usleep 100000
	i=$((i + 1))
done

for d in /sys/block/vd*; do
	[ -e "$d" ] && echo "HVTEST-DISK ${d##*/} serial=$(cat "$d/serial") ro=$(cat "$d/ro") queues=$(ls -d "$d"/mq/* | wc -l)"
done
for n in /sys/class/net/eth*; do
	[ -e "$n" ] && echo "HVTEST-NIC ${n##*/} mac=$(cat "$n/address") queues=$(ls -d "$n"/queues/rx-* | wc -l) mtu=$(cat "$n/mtu")"
done
echo "HVTEST-RNG $(cat /sys/class/misc/hw_random/rng_current)"
echo HVTEST-READY

export PS1='hvtest# '
while :; do setsid cttyhack sh; done
