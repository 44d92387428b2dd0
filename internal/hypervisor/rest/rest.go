// Package rest is the HTTP-over-unix-socket client that Cloud Hypervisor's and Firecracker's
// backends drive their hypervisor's API with: JSON bodies, expected status codes, and the
// retry rule of spec §9.3 (transport errors, 5xx and 429 are retried; snapshot and restore
// calls are not).
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Client talks to one API socket.
type Client struct {
	socket string
	base   string // URL prefix: "http://localhost/api/v1" (CH) or "http://localhost" (FC)
	http   *http.Client
}

// New returns a client for the API on socket whose paths start with prefix ("/api/v1", "").
func New(socket, prefix string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true, // one process per command; no idle connections left behind
	}
	return &Client{socket: socket, base: "http://localhost" + prefix, http: &http.Client{Transport: tr}}
}

// Socket is the API socket this client talks to.
func (c *Client) Socket() string { return c.socket }

// Call options.
type Call struct {
	Method string
	Path   string // e.g. "/vm.info" or "/machine-config"
	Body   any    // marshalled as JSON when non-nil
	Out    any    // the response body is decoded into it when non-nil
	OK     []int  // accepted status codes (default 200 and 204)
	// Once: no retries (snapshot, restore: repeating them is not safe).
	Once bool
	// Timeout per attempt (default 30s).
	Timeout time.Duration
}

// backoff is the wait before each retry.
var backoff = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}

// Do performs the call, retrying transport errors, 5xx and 429 unless c.Once. The error names
// the method, the path and the hypervisor's answer.
func (c *Client) Do(ctx context.Context, call Call) error {
	var body []byte
	if call.Body != nil {
		var err error
		if body, err = json.Marshal(call.Body); err != nil {
			return fmt.Errorf("%s %s: encode body: %w", call.Method, call.Path, err)
		}
	}
	attempts := len(backoff) + 1
	if call.Once {
		attempts = 1
	}
	var err error
	for i := range attempts {
		if i > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(backoff[i-1]):
			}
		}
		var retry bool
		if retry, err = c.once(ctx, call, body); err == nil || !retry {
			return err
		}
	}
	return err
}

// Error is an answer with an unexpected status.
type Error struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s → %d: %s", e.Method, e.Path, e.Status, strings.TrimSpace(e.Body))
}

func (c *Client) once(ctx context.Context, call Call, body []byte) (retry bool, err error) {
	timeout := call.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, call.Method, c.base+call.Path, rd)
	if err != nil {
		return false, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return true, fmt.Errorf("%s %s: %w", call.Method, call.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return true, fmt.Errorf("%s %s: read answer: %w", call.Method, call.Path, err)
	}
	ok := call.OK
	if len(ok) == 0 {
		ok = []int{http.StatusOK, http.StatusNoContent}
	}
	if !slices.Contains(ok, resp.StatusCode) {
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests,
			&Error{Method: call.Method, Path: call.Path, Status: resp.StatusCode, Body: string(data)}
	}
	if call.Out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, call.Out); err != nil {
			return false, fmt.Errorf("%s %s: decode answer: %w", call.Method, call.Path, err)
		}
	}
	return false, nil
}

// Ping reports whether something answers HTTP on the socket (any status): the hypervisor's
// API is up.
func (c *Client) Ping(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
