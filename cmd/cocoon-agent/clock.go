package main

import (
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A guest resumed from a snapshot (clone, restore, standby take-over) keeps the clock it had
// when the snapshot was taken: nothing in it notices the time that passed. The RTC the
// hypervisor emulates follows the host's clock (QEMU's -rtc clock=host, the default; Cloud
// Hypervisor's CMOS), so the agent sets the system clock from it when the two disagree by more
// than maxClockSkew. It checks whenever it wakes: before serving a host that connects, and on
// the safety tick. Guests without an RTC (Firecracker) keep their clock.
const (
	maxClockSkew = 2 * time.Second
	rtcEpoch     = "/sys/class/rtc/rtc0/since_epoch"
)

func syncClock() {
	b, err := os.ReadFile(rtcEpoch)
	if err != nil {
		return
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || sec <= 0 {
		return
	}
	rtc := time.Unix(sec, 5e8) // the RTC counts whole seconds: aim at the middle of this one
	skew := time.Since(rtc)
	if skew > -maxClockSkew && skew < maxClockSkew {
		return
	}
	tv := unix.NsecToTimeval(rtc.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		log.Printf("clock is %s off the RTC and cannot be set: %v", skew.Round(time.Second), err)
		return
	}
	log.Printf("clock set from the RTC: it was %s off (resumed from a snapshot?)", skew.Round(time.Second))
}
