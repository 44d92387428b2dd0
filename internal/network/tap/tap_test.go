package tap

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inThrowawayNetns moves the test goroutine's thread into a new network namespace for the
// duration of the test; the namespace dies with its last reference.
func inThrowawayNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and TAP devices")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("restore netns: %v", err) // thread stays locked and is retired
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	h, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}

func TestCreateOpenDelete(t *testing.T) {
	inThrowawayNetns(t)
	for _, c := range []struct {
		name   string
		queues int
		multi  bool
	}{{"tq1", 1, false}, {"tq4", 4, true}} {
		link, err := Create(c.name, c.queues, 1400)
		if err != nil {
			t.Fatal(err)
		}
		tt := link.(*netlink.Tuntap)
		if got := tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0; got != c.multi || tt.MTU != 1400 || tt.TxQLen != txQueueLen {
			t.Errorf("%s: multi-queue %v MTU %d txqlen %d", c.name, got, tt.MTU, tt.TxQLen)
		}
		qdiscs, err := netlink.QdiscList(link)
		if err != nil || len(qdiscs) != 1 || qdiscs[0].Type() != "noqueue" {
			t.Errorf("%s: qdiscs %v (%v), want only noqueue", c.name, qdiscs, err)
		}
		files, err := Open(c.name, c.queues)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != c.queues {
			t.Errorf("%s: Open gave %d fds, want %d", c.name, len(files), c.queues)
		}
		// The kernel reports attached queues of multi-queue TAPs only.
		l, _ := netlink.LinkByName(c.name)
		if got := l.(*netlink.Tuntap).Queues; c.multi && got != c.queues {
			t.Errorf("%s: %d queues attached, want %d", c.name, got, c.queues)
		}
		for _, f := range files {
			f.Close()
		}
	}

	if _, err := Open("tq1", 2); err == nil || !strings.Contains(err.Error(), "single-queue") {
		t.Errorf("opening 2 queues of a single-queue TAP: %v", err)
	}
	if _, err := Open("lo", 1); err == nil {
		t.Error("Open accepted the loopback device")
	}
	if _, err := Create("tqbad", MaxQueues+1, 0); err == nil {
		t.Error("Create accepted too many queues")
	}
	if _, err := Create("tq4", 4, 0); err == nil {
		t.Error("Create replaced an existing TAP")
	}
	for range 2 {
		if err := Delete("tq4"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := netlink.LinkByName("tq4"); err == nil {
		t.Error("tq4 still exists")
	}
}
