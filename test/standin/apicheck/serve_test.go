package apicheck

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// unixClient serves c on a real unix socket and returns a client talking to it.
func unixClient(t *testing.T, c *Checker, h http.Handler) (*http.Client, string, string) {
	t.Helper()
	dir := t.TempDir()
	sock, log := filepath.Join(dir, "api.sock"), filepath.Join(dir, "requests.jsonl")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, c, log, h)
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	t.Cleanup(client.CloseIdleConnections)
	return client, log, dir
}

func do(t *testing.T, client *http.Client, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://localhost"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}

func TestServeCloudHypervisor(t *testing.T) {
	var mu sync.Mutex
	var seen []string // bodies the stand-in's own handler received
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		if r.URL.Path == "/api/v1/vm.info" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"state":"Running","config":{"payload":{"kernel":"/k"}}}`)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	client, log, dir := unixClient(t, mustCH(t), h)
	snapURL := "file://" + filepath.Join(dir, "snap")

	if code, _ := do(t, client, "PUT", "/api/v1/vm.snapshot", `{"destination_url":"`+snapURL+`"}`); code != http.StatusNoContent {
		t.Fatalf("valid snapshot: %d", code)
	}
	if code, body := do(t, client, "GET", "/api/v1/vm.info", ""); code != http.StatusOK || !strings.Contains(body, "Running") {
		t.Fatalf("vm.info: %d %s", code, body)
	}
	code, body := do(t, client, "PUT", "/api/v1/vm.add-net", `{"tap":"t0","mcc":"aa:bb:cc:dd:ee:ff"}`)
	if code != http.StatusBadRequest || !strings.Contains(body, `"mcc"`) {
		t.Fatalf("invalid add-net: %d %q", code, body)
	}
	if code, body := do(t, client, "PUT", "/api/v1/vm.boot.now", ""); code != http.StatusBadRequest || !strings.Contains(body, "unknown path") {
		t.Fatalf("unknown path: %d %q", code, body)
	}
	if code, _ := do(t, client, "PUT", "/api/v1/vm.resume", ""); code != http.StatusNoContent {
		t.Fatalf("resume: %d", code)
	}

	mu.Lock()
	wantSeen := []string{"PUT /api/v1/vm.snapshot " + `{"destination_url":"` + snapURL + `"}`, "GET /api/v1/vm.info ", "PUT /api/v1/vm.resume "}
	if strings.Join(seen, "\n") != strings.Join(wantSeen, "\n") {
		t.Errorf("handler saw (invalid requests must not reach it, bodies must be restored):\n%s", strings.Join(seen, "\n"))
	}
	mu.Unlock()
	recs, err := ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	CompareGolden(t, recs, filepath.Join("testdata", "ch-serve.golden"), map[string]string{dir: "$DIR"}, *update)
}

func TestServeFirecracker(t *testing.T) {
	client, log, dir := unixClient(t, mustFC(t), nil) // nil handler: 204 for every valid request
	steps := []struct {
		method, path, body string
		code               int
	}{
		{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256}`, http.StatusNoContent},
		{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"` + dir + `/root.raw","is_root_device":true}`, http.StatusNoContent},
		{"PUT", "/actions", `{"action_type":"InstanceStart"}`, http.StatusNoContent},
		{"PATCH", "/vm", `{"state":"Paused"}`, http.StatusNoContent},
		{"PATCH", "/vm", `{"state":"Frozen"}`, http.StatusBadRequest},
		{"PUT", "/snapshot/create", `{"snapshot_path":"` + dir + `/vmstate","mem_file_path":"` + dir + `/mem"}`, http.StatusNoContent},
		{"PUT", "/snapshot/load", `{"snapshot_path":"` + dir + `/vmstate","mem_backend":{"backend_type":"File"}}`, http.StatusBadRequest},
	}
	for _, s := range steps {
		code, body := do(t, client, s.method, s.path, s.body)
		if code != s.code {
			t.Fatalf("%s %s %s: got %d %s, want %d", s.method, s.path, s.body, code, body, s.code)
		}
		if code == http.StatusBadRequest {
			var fault struct {
				FaultMessage string `json:"fault_message"`
			}
			if err := json.Unmarshal([]byte(body), &fault); err != nil || !strings.HasPrefix(fault.FaultMessage, s.method+" "+s.path+": ") {
				t.Fatalf("Firecracker errors are {\"fault_message\": ...}: %q (%v)", body, err)
			}
		}
	}
	recs, err := ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(steps) || recs[4].Error == "" || recs[3].Error != "" {
		t.Fatalf("records: %+v", recs)
	}
	CompareGolden(t, recs, filepath.Join("testdata", "fc-serve.golden"), map[string]string{dir: "$DIR"}, *update)
}

// Many clients at once: every request is recorded whole, checked under -race.
func TestServeConcurrent(t *testing.T) {
	client, log, _ := unixClient(t, mustFC(t), nil)
	const n = 32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"vcpu_count":%d,"mem_size_mib":256}`, i+1)
			if i%2 == 1 {
				body = fmt.Sprintf(`{"vcpu_count":"%d","mem_size_mib":256}`, i+1)
			}
			req, _ := http.NewRequest("PUT", "http://localhost/machine-config", strings.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if want := map[bool]int{false: 204, true: 400}[i%2 == 1]; resp.StatusCode != want {
				t.Errorf("request %d: status %d, want %d", i, resp.StatusCode, want)
			}
		})
	}
	wg.Wait()
	recs, err := ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	invalid := 0
	for _, r := range recs {
		if r.Error != "" {
			invalid++
		}
	}
	if len(recs) != n || invalid != n/2 {
		t.Fatalf("%d records, %d invalid; want %d and %d", len(recs), invalid, n, n/2)
	}
}
