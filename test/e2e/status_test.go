package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// vm status --event streams ADDED / MODIFIED / DELETED as the index changes.
func TestStatusEventStream(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := env.Cmd(ctx, "vm", "status", "--event", "--format", "json", "-n", "60")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	events := make(chan [2]string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev struct {
				Event string `json:"event"`
				VM    struct {
					Config struct {
						Name string `json:"name"`
					} `json:"config"`
					State string `json:"state"`
				} `json:"vm"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- [2]string{ev.Event, ev.VM.Config.Name + "/" + ev.VM.State}
			}
		}
		close(events)
	}()
	expect := func(want [2]string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("status exited before %v", want)
				}
				// The name must match; the state may be caught mid-creation.
				if ev[0] == want[0] && strings.HasPrefix(ev[1], want[1]) {
					return
				}
			case <-deadline:
				t.Fatalf("no %v event within 30s (the poll interval is 60s, so fsnotify must deliver it)", want)
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // let the watcher start
	env.MustRun("vm", "create", "--name", "w1", "--nics", "0", ref)
	expect([2]string{"ADDED", "w1/"})
	env.MustRun("vm", "rm", "w1")
	expect([2]string{"DELETED", "w1/"})
}
