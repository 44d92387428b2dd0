package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// memory_merge makes hypervisors and their console relays KSM-mergeable, and only then: the
// default leaves every VM's pages its own. With ksmd running, two clones of one snapshot then
// share the pages they hold alike (QEMU's heap, pages the guests wrote the same).
func TestMemoryMerge(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs")
	if _, err := os.Stat("/proc/self/ksm_stat"); err != nil {
		t.Skip("kernel without per-process KSM (/proc/self/ksm_stat; Linux 6.4+)")
	}
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "plain", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	if got := mergeAny(t, env.Inspect("plain").PID); got {
		t.Fatal("a VM started without memory_merge is KSM-mergeable as a whole")
	}

	env.ExtraEnv = append(env.ExtraEnv, "COCOON_MEMORY_MERGE=true")
	env.MustRun("vm", "run", "--name", "src", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	src := env.Inspect("src")
	if !mergeAny(t, src.PID) || !mergeAny(t, relayPID(t, src.RunDir)) {
		t.Fatal("memory_merge: the hypervisor or its console relay is not KSM-mergeable")
	}
	env.WaitConsole(src, "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "s", "src")
	env.MustRun("vm", "clone", "--name", "c1", "s")
	env.MustRun("vm", "clone", "--name", "c2", "s")
	c1 := env.Inspect("c1")
	if !mergeAny(t, c1.PID) {
		t.Fatal("memory_merge: a clone's hypervisor is not KSM-mergeable")
	}

	if err := runKSM(t, 2000); err != nil {
		t.Skip(err)
	}
	// 9 MiB were seen merged in each clone: ask for 4.
	const want = 1024
	var merged int
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if merged = ksmStat(t, c1.PID, "ksm_merging_pages"); merged >= want {
			break
		}
	}
	if merged < want {
		t.Fatalf("clone c1 has %d KSM-merged pages after 2 min, want ≥ %d", merged, want)
	}
	t.Logf("clone c1: %d pages (%d MiB) merged", merged, merged*4/1024)
}

func mergeAny(t *testing.T, pid int) bool {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/ksm_stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(data, []byte("ksm_merge_any: yes"))
}

func ksmStat(t *testing.T, pid int, key string) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/ksm_stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/ksm_stat", key, pid)
	return 0
}

// ksmDir holds the kernel's same-page merging controls.
const ksmDir = "/sys/kernel/mm/ksm/"

// runKSM starts ksmd, scanning pagesToScan pages per pass step, when it is off; ksmd is
// host-wide, so both settings are put back as found when tb ends.
func runKSM(tb testing.TB, pagesToScan int) error {
	run, err := os.ReadFile(ksmDir + "run")
	if err != nil {
		return fmt.Errorf("no KSM: %w", err)
	}
	if strings.TrimSpace(string(run)) == "1" {
		return nil
	}
	scan, _ := os.ReadFile(ksmDir + "pages_to_scan")
	tb.Cleanup(func() {
		_ = os.WriteFile(ksmDir+"pages_to_scan", scan, 0o644)
		_ = os.WriteFile(ksmDir+"run", run, 0o644)
	})
	if err := os.WriteFile(ksmDir+"pages_to_scan", []byte(strconv.Itoa(pagesToScan)), 0o644); err != nil {
		return fmt.Errorf("cannot tune KSM (needs root): %w", err)
	}
	if err := os.WriteFile(ksmDir+"run", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("cannot start KSM (needs root): %w", err)
	}
	return nil
}
