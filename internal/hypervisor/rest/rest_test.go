package rest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// serve runs h on a unix socket in a temp dir and returns a client for it.
func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	return New(sock, "/api/v1")
}

func TestRetriesServerErrorsThenDecodes(t *testing.T) {
	var n atomic.Int32
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/vm.info" || r.Method != http.MethodGet {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		if n.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"state": "Running"}) //nolint:errcheck
	})
	var out struct{ State string }
	if err := c.Do(context.Background(), Call{Method: http.MethodGet, Path: "/vm.info", Out: &out}); err != nil {
		t.Fatal(err)
	}
	if out.State != "Running" || n.Load() != 3 {
		t.Errorf("state %q after %d attempts, want Running after 3", out.State, n.Load())
	}
}

func TestOnceAndClientErrorsAreNotRetried(t *testing.T) {
	var n atomic.Int32
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "no json", http.StatusUnsupportedMediaType)
			return
		}
		http.Error(w, "snapshot failed: disk full", http.StatusInternalServerError)
	})
	err := c.Do(context.Background(), Call{Method: http.MethodPut, Path: "/vm.snapshot", Body: map[string]string{"destination_url": "file:///x"}, Once: true})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != 500 || !strings.Contains(err.Error(), "PUT /vm.snapshot → 500: snapshot failed: disk full") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("a Once call was sent %d times", n.Load())
	}
}

func TestTransportErrorNamesTheCall(t *testing.T) {
	c := New(filepath.Join(t.TempDir(), "none.sock"), "")
	err := c.Do(context.Background(), Call{Method: http.MethodPut, Path: "/actions", Body: map[string]string{"action_type": "InstanceStart"}})
	if err == nil || !strings.Contains(err.Error(), "PUT /actions") {
		t.Fatalf("err = %v", err)
	}
	if c.Ping(context.Background(), "/") == nil {
		t.Error("Ping of a missing socket succeeded")
	}
}
