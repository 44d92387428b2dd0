package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type counterIndex struct {
	Header
	Counts map[string]int `json:"counts"`
	Pad    string         `json:"pad,omitempty"`
}

func (c *counterIndex) Init() {
	if c.Counts == nil {
		c.Counts = map[string]int{}
	}
}

// Clone makes counterIndex a Cloner: the tests below, the multi-process ones included, run
// through the store's cache of the decoded index.
func (c *counterIndex) Clone() *counterIndex {
	out := *c
	out.Counts = maps.Clone(c.Counts)
	return &out
}

var decodes atomic.Int64

// UnmarshalJSON counts decodes of the index file.
func (c *counterIndex) UnmarshalJSON(b []byte) error {
	decodes.Add(1)
	type plain counterIndex
	return json.Unmarshal(b, (*plain)(c))
}

func newCounter(dir string) *Store[counterIndex, *counterIndex] {
	return New[counterIndex](dir, "counter", 1)
}

// TestHelperProcess is not a test: the tests below re-run the test binary with it to get real
// separate processes contending for the same index.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("STORE_HELPER_DIR")
	if dir == "" {
		return
	}
	s := newCounter(dir)
	switch os.Getenv("STORE_HELPER_MODE") {
	case "increment":
		n, _ := strconv.Atoi(os.Getenv("STORE_HELPER_N"))
		for range n {
			if err := s.Update(context.Background(), func(c *counterIndex) error { c.Counts["n"]++; return nil }); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	case "rewrite":
		for i := 0; ; i++ {
			_ = s.Update(context.Background(), func(c *counterIndex) error {
				c.Counts["n"] = i
				c.Pad = strings.Repeat(strconv.Itoa(i%10), 1<<20) // large writes widen the crash window
				return nil
			})
		}
	}
	os.Exit(0)
}

func helper(t *testing.T, dir, mode string, extra ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "STORE_HELPER_DIR="+dir, "STORE_HELPER_MODE="+mode)
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestConcurrentProcessesLoseNoUpdate(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 6, 40
	var cmds []*exec.Cmd
	for range procs {
		c := helper(t, dir, "increment", "STORE_HELPER_N="+strconv.Itoa(each))
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper failed: %v", err)
		}
	}
	var got int
	if err := newCounter(dir).Read(context.Background(), func(c *counterIndex) error { got = c.Counts["n"]; return nil }); err != nil {
		t.Fatal(err)
	}
	if got != procs*each {
		t.Fatalf("lost updates: counter is %d, want %d", got, procs*each)
	}
}

func TestKilledWriterNeverLeavesTornFile(t *testing.T) {
	dir := t.TempDir()
	for round := range 8 {
		c := helper(t, dir, "rewrite")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+round*37) * time.Millisecond)
		_ = c.Process.Signal(syscall.SIGKILL)
		_ = c.Wait()
		data, err := os.ReadFile(filepath.Join(dir, "counter.json"))
		if os.IsNotExist(err) {
			continue // killed before the first commit: no file is a valid outcome
		}
		if err != nil {
			t.Fatal(err)
		}
		var idx counterIndex
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatalf("round %d: torn index after kill: %v", round, err)
		}
		if want := strconv.Itoa(idx.Counts["n"] % 10); idx.Pad != strings.Repeat(want, 1<<20) {
			t.Fatalf("round %d: index content is not one consistent write", round)
		}
	}
}

func TestUpdateErrorWritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := newCounter(dir)
	ctx := context.Background()
	if err := s.Update(ctx, func(c *counterIndex) error { c.Counts["a"] = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	wantErr := fmt.Errorf("boom")
	if err := s.Update(ctx, func(c *counterIndex) error { c.Counts["a"] = 2; return wantErr }); err != wantErr {
		t.Fatalf("got %v", err)
	}
	_ = s.Read(ctx, func(c *counterIndex) error {
		if c.Counts["a"] != 1 {
			t.Fatalf("failed update was written: %v", c.Counts)
		}
		return nil
	})
}

func TestNewerSchemaAndCorruptFileAreRefused(t *testing.T) {
	dir := t.TempDir()
	s := newCounter(dir)
	if err := os.WriteFile(s.Path(), []byte(`{"schema":9,"counts":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := s.Read(context.Background(), func(*counterIndex) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema accepted: %v", err)
	}
	if err := os.WriteFile(s.Path(), []byte(`{"schema":1,`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Read(context.Background(), func(*counterIndex) error { return nil }); err == nil || !strings.Contains(err.Error(), "parse index") {
		t.Fatalf("corrupt index accepted: %v", err)
	}
}

func TestReadersShareWritersExclude(t *testing.T) {
	dir := t.TempDir()
	s := newCounter(dir)
	ctx := context.Background()
	reader := s.Lock()
	if err := reader.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	// A second shared holder gets in while the first holds the lock.
	if err := s.Read(ctx, func(*counterIndex) error { return nil }); err != nil {
		t.Fatalf("shared read blocked by a reader: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s.Update(short, func(*counterIndex) error { return nil }); err == nil {
		t.Fatal("writer got in while a reader held the lock")
	}
	_ = reader.Unlock()
	if err := s.Update(ctx, func(*counterIndex) error { return nil }); err != nil {
		t.Fatalf("writer blocked after the reader left: %v", err)
	}
}

// The store decodes the file once per content: reads and updates after its own write, or after
// a read of the same bytes, use copies of what it holds; a write by another store (another
// process) is seen at once; what a caller does to its copy never reaches the next reader.
func TestCachedIndexFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s1, s2 := newCounter(dir), newCounter(dir)
	read := func(s *Store[counterIndex, *counterIndex]) int {
		t.Helper()
		var n int
		if err := s.Read(ctx, func(c *counterIndex) error { n = c.Counts["n"]; c.Counts["n"] = -1; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := s1.Update(ctx, func(c *counterIndex) error { c.Counts["n"] = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	before := decodes.Load()
	if n := read(s1); n != 1 {
		t.Fatalf("read after own write = %d, want 1", n)
	}
	if n := read(s1); n != 1 {
		t.Fatalf("a reader's edit of its copy leaked into the next read: %d, want 1", n)
	}
	if err := s1.Update(ctx, func(c *counterIndex) error { c.Counts["n"]++; return nil }); err != nil {
		t.Fatal(err)
	}
	var viewed int
	if err := s1.View(ctx, func(c *counterIndex) error { viewed = c.Counts["n"]; return nil }); err != nil || viewed != 2 {
		t.Fatalf("view = %d, %v; want 2", viewed, err)
	}
	if d := decodes.Load() - before; d != 0 {
		t.Fatalf("%d decodes for reads, a view and an update of the file this store wrote, want 0", d)
	}
	if n := read(s2); n != 2 {
		t.Fatalf("other store read %d, want 2", n)
	}
	if err := s2.Update(ctx, func(c *counterIndex) error { c.Counts["n"] = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s1.View(ctx, func(c *counterIndex) error { viewed = c.Counts["n"]; return nil }); err != nil || viewed != 7 {
		t.Fatalf("view after another store's write = %d, %v; want 7 (stale cache)", viewed, err)
	}
	if n := read(s1); n != 7 {
		t.Fatalf("read after another store's write = %d, want 7 (stale cache)", n)
	}
	// A failed update leaves the cache as the file is.
	if err := s1.Update(ctx, func(c *counterIndex) error { c.Counts["n"] = 100; return fmt.Errorf("no") }); err == nil {
		t.Fatal("update error lost")
	}
	if n := read(s1); n != 7 {
		t.Fatalf("read after a failed update = %d, want 7", n)
	}
}

// A runtime file replaces the old content whole, with the asked mode, and leaves no temp file.
func TestWriteRuntimeFileReplacesWhole(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "run", "qemu.pid")
	for _, want := range []string{"123\n", "4567\n"} {
		if err := WriteRuntimeFile(p, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Fatalf("content %q (%v), want %q", got, err, want)
		}
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "run", ".tmp-*")); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}
