package e2e

// Scale benchmarks: clone density and the control plane at 1000 VMs.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// smapsKB reads fields (summed) of a process's smaps_rollup.
func smapsKB(b *testing.B, pid int, fields ...string) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		for _, want := range fields {
			if len(f) >= 2 && f[0] == want+":" {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				sum += v
			}
		}
	}
	return sum
}

func memAvailableMiB() int {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	return 0
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkCloneDensity starts N clones (COCOON_DENSITY_N, default 100, fewer when available
// memory would not hold them at 64 MiB each) of one snapshot of a settled guest (its agent
// answers), COCOON_DENSITY_PARALLEL at a time;
// reports clones/s, clone time, PSS and private memory per clone (its QEMU and console relay),
// how many answer on their console, and the time to remove all N concurrently. The clones run
// with memory_merge; their memory is measured again once ksmd (started for the measurement
// when off, then put back) has merged their identical pages.
func BenchmarkCloneDensity(b *testing.B) {
	harness.Require(b, "qemu-system-x86_64", "mkfs.erofs")
	n, par := envInt("COCOON_DENSITY_N", 100), envInt("COCOON_DENSITY_PARALLEL", 4)
	if fit := (memAvailableMiB() - 2048) / 64; fit < n {
		b.Logf("NOTE: density N=%d instead of %d: %d MiB available allows no more at 64 MiB per clone", max(fit, 1), n, memAvailableMiB())
		n = max(fit, 1)
	}
	env := harness.NewEnv(b)
	env.ExtraEnv = append(env.ExtraEnv, "COCOON_MEMORY_MERGE=true")
	layout := harness.RequireImage(b, "tiny")
	ref := harness.NewRegistry(b).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	env.MustRun("vm", "run", "--name", "src", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("src"), "COCOON-READY", 5*time.Minute)
	// The agent starts from the login shell after the ready line: a snapshot taken before it
	// answers has every clone finish the agent's start-up (~1.5 s of emulated CPU and ~30 MiB
	// of translated code and guest memory each), which is not an idle clone's cost.
	waitAgent(b, env, "src", 5*time.Minute)
	env.MustRun("snapshot", "save", "--name", "s", "src")
	env.MustRun("vm", "rm", "--force", "src")

	times := make([]time.Duration, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			if r := env.Run("vm", "clone", "--name", fmt.Sprintf("d%d", i), "s"); r.Err != nil {
				b.Errorf("clone d%d: %v %s", i, r.Err, r.Stderr)
			}
			times[i] = time.Since(start)
		}()
	}
	wg.Wait()
	total := time.Since(t0)
	if b.Failed() {
		b.FailNow()
	}
	time.Sleep(5 * time.Second) // let the clones settle after resume
	pids := make([]int, 0, 2*n)
	for i := range n {
		vm := env.Inspect(fmt.Sprintf("d%d", i))
		pids = append(pids, vm.PID, relayPID(b, vm.RunDir))
	}
	pss, priv := clonesMemory(b, pids)
	ksmPSS, ksmPriv := math.NaN(), math.NaN()
	if startKSM(b) {
		ksmPSS, ksmPriv = clonesMemory(b, pids)
	}
	answered := 0
	for i := range n {
		c := env.AttachConsole(fmt.Sprintf("d%d", i))
		c.Send("\recho ALIVE-$((40+2))\r")
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) && !strings.Contains(c.Output(), "ALIVE-42") {
			time.Sleep(100 * time.Millisecond)
		}
		if strings.Contains(c.Output(), "ALIVE-42") {
			answered++
		}
		c.Send("\r\x1d.")
		_ = c.Wait(15 * time.Second)
	}
	t0 = time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env.Run("vm", "rm", "--force", fmt.Sprintf("d%d", i))
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(n), "clones")
	b.ReportMetric(float64(n)/total.Seconds(), "clones/s")
	b.ReportMetric(float64(median(times).Milliseconds()), "clone-median-ms")
	b.ReportMetric(float64(percentile(times, 0.95).Milliseconds()), "clone-p95-ms")
	b.ReportMetric(pss, "PSS-MiB/clone")
	b.ReportMetric(priv, "private-MiB/clone")
	if !math.IsNaN(ksmPSS) {
		b.ReportMetric(ksmPSS, "PSS-MiB/clone-ksm")
		b.ReportMetric(ksmPriv, "private-MiB/clone-ksm")
	}
	b.ReportMetric(float64(answered), "answered")
	b.ReportMetric(time.Since(t0).Seconds(), "rm-all-s")
}

// clonesMemory returns the median PSS and private memory (MiB) of the clones whose QEMU and
// console relay PIDs come in pairs.
func clonesMemory(b *testing.B, pids []int) (pss, priv float64) {
	var ps, pr []float64
	for i := 0; i+1 < len(pids); i += 2 {
		ps = append(ps, float64(smapsKB(b, pids[i], "Pss")+smapsKB(b, pids[i+1], "Pss"))/1024)
		pr = append(pr, float64(smapsKB(b, pids[i], "Private_Clean", "Private_Dirty")+smapsKB(b, pids[i+1], "Private_Clean", "Private_Dirty"))/1024)
	}
	sort.Float64s(ps)
	sort.Float64s(pr)
	return ps[len(ps)/2], pr[len(pr)/2]
}

// relayPID returns the PID of the console relay serving runDir's console.sock.
func relayPID(tb testing.TB, runDir string) int {
	tb.Helper()
	want := []byte("cocoon-console-relay\x00" + filepath.Join(runDir, "console.sock") + "\x00")
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		if cmd, _ := os.ReadFile("/proc/" + en.Name() + "/cmdline"); bytes.Equal(cmd, want) {
			pid, _ := strconv.Atoi(en.Name())
			return pid
		}
	}
	tb.Fatalf("no console relay for %s", runDir)
	return 0
}

// startKSM runs ksmd (see runKSM) and waits until it has made two full passes over the
// mergeable pages, which merging takes. False when it cannot.
func startKSM(b *testing.B) bool {
	if err := runKSM(b, 4000); err != nil {
		b.Logf("NOTE: %v: memory with merging not measured", err)
		return false
	}
	scans := func() int {
		data, _ := os.ReadFile(ksmDir + "full_scans")
		n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		return n
	}
	start := scans()
	for deadline := time.Now().Add(5 * time.Minute); scans() < start+2; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			b.Log("NOTE: ksmd made no two full passes in 5 min: memory with merging not measured")
			return false
		}
	}
	return true
}

// runTimed runs cocoon once and returns its wall time; lastCPU keeps its user+system CPU time
// (wall time on a loaded shared host is mostly waiting).
func runTimed(b *testing.B, env *harness.Env, args ...string) time.Duration {
	c := env.Cmd(b.Context(), args...)
	c.Stdout, c.Stderr = nil, nil
	t0 := time.Now()
	if err := c.Run(); err != nil {
		b.Fatalf("cocoon %s: %v", strings.Join(args, " "), err)
	}
	lastCPU = c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	return time.Since(t0)
}

// peakRSS runs cocoon once under GNU time and returns its peak RSS (KiB). The rusage of a
// child of this process cannot say: Go starts children with vfork, and the kernel counts the
// high-water RSS of the memory given up at exec — this test binary's — as the child's.
func peakRSS(b *testing.B, env *harness.Env, args ...string) int64 {
	c := env.Cmd(b.Context(), args...)
	out := filepath.Join(b.TempDir(), "rss")
	c.Args = append([]string{"time", "-f", "%M", "-o", out, c.Path}, c.Args[1:]...)
	c.Path, _ = exec.LookPath("time")
	c.Stdout, c.Stderr = nil, nil
	if err := c.Run(); err != nil {
		b.Fatalf("time cocoon %s: %v", strings.Join(args, " "), err)
	}
	data, _ := os.ReadFile(out)
	kb, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		b.Fatalf("peak RSS of cocoon %s: %q", strings.Join(args, " "), data)
	}
	return kb
}

var lastCPU time.Duration

// BenchmarkControlPlane1000: vm create, then vm list / inspect / rm (one VM, then 100 in one
// command) / gc with 1000 VM records
// (the index is padded with copies of a real created record, which own no files).
func BenchmarkControlPlane1000(b *testing.B) {
	harness.Require(b, "mkfs.erofs", "mkfs.ext4", "time")
	env := harness.NewEnv(b)
	layout := harness.RequireImage(b, "tiny")
	ref := harness.NewRegistry(b).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	var creates []time.Duration
	for i := range 10 {
		d := runTimed(b, env, "vm", "create", "--name", fmt.Sprintf("c%d", i), "--nics", "0", ref)
		creates = append(creates, d)
	}
	padIndex(b, env, 1000)
	var lists, listCPU, jsons, inspects, rms, rmCPU []time.Duration
	var rss int64
	for i := range 5 {
		d := runTimed(b, env, "vm", "list")
		lists, listCPU, rss = append(lists, d), append(listCPU, lastCPU), max(rss, peakRSS(b, env, "vm", "list"))
		d = runTimed(b, env, "vm", "list", "-o", "json")
		jsons = append(jsons, d)
		d = runTimed(b, env, "vm", "inspect", fmt.Sprintf("pad%d", 500+i))
		inspects = append(inspects, d)
		d = runTimed(b, env, "vm", "rm", fmt.Sprintf("pad%d", i))
		rms, rmCPU = append(rms, d), append(rmCPU, lastCPU)
	}
	many := []string{"vm", "rm"} // one command removing 100 of the ~995 records left
	for i := 100; i < 200; i++ {
		many = append(many, fmt.Sprintf("pad%d", i))
	}
	rmMany := runTimed(b, env, many...)
	rmManyCPU := lastCPU
	gc := runTimed(b, env, "gc")
	b.ReportMetric(float64(median(creates).Milliseconds()), "create-ms")
	b.ReportMetric(float64(median(lists).Milliseconds()), "list-1000-ms")
	b.ReportMetric(float64(median(listCPU).Milliseconds()), "list-1000-cpu-ms")
	b.ReportMetric(float64(median(jsons).Milliseconds()), "list-json-1000-ms")
	b.ReportMetric(float64(rss)/1024, "list-1000-peak-RSS-MiB")
	b.ReportMetric(float64(median(inspects).Milliseconds()), "inspect-1000-ms")
	b.ReportMetric(float64(median(rms).Milliseconds()), "rm-1000-ms")
	b.ReportMetric(float64(median(rmCPU).Milliseconds()), "rm-1000-cpu-ms")
	b.ReportMetric(float64(rmMany.Milliseconds()), "rm-100-of-1000-ms")
	b.ReportMetric(float64(rmManyCPU.Milliseconds()), "rm-100-of-1000-cpu-ms")
	b.ReportMetric(float64(gc.Milliseconds()), "gc-1000-ms")
}

// padIndex copies the first record until the VM index holds n (IDs in the VM ID alphabet).
func padIndex(b *testing.B, env *harness.Env, n int) {
	path := filepath.Join(env.Root, "vm", "db", "vms.json")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var x struct {
		Schema int                       `json:"schema"`
		VMs    map[string]map[string]any `json:"vms"`
		Names  map[string]string         `json:"names"`
	}
	if err := json.Unmarshal(data, &x); err != nil {
		b.Fatal(err)
	}
	var proto map[string]any
	for _, v := range x.VMs {
		proto = v
		break
	}
	for i := 0; len(x.VMs) < n; i++ {
		id := fmt.Sprintf("PAD%023d", i)
		id = strings.NewReplacer("0", "A", "1", "B", "8", "C", "9", "D").Replace(id)
		rec := map[string]any{}
		for k, v := range proto {
			rec[k] = v
		}
		rec["id"], rec["name"] = id, fmt.Sprintf("pad%d", i)
		rec["run_dir"], rec["log_dir"], rec["memory_dir"] = filepath.Join(env.RunDir, id), filepath.Join(env.LogDir, id), filepath.Join(env.MemDir, id)
		x.VMs[id] = rec
		x.Names[fmt.Sprintf("pad%d", i)] = id
	}
	out, _ := json.Marshal(x)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		b.Fatal(err)
	}
}
