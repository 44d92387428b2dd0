package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-11-30T20:00:00Z", now.Add(-time.Hour)},
		{"2026-11-30T22:00:00.5+01:00", now.Add(500 * time.Millisecond)},
		{"10m", now.Add(-10 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"0s", now},
		{"1764536400", time.Unix(1764536400, 0)},
		{"1764536400.25", time.Unix(1764536400, 250000000)},
		{"1764536400.000000001", time.Unix(1764536400, 1)},
	} {
		got, err := parseSince(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-10m", "1764536400.", "1.2.3", "1764536400.1234567890", "2026-11-30"} {
		if _, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "invalid --since") {
			t.Errorf("parseSince(%q) = %v, want an invalid --since error", bad, err)
		}
	}
}

func TestPrintLogFromOffset(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	content := "old 1\nold 2\nnew 1\nnew 2\nnew 3\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	offset := int64(strings.Index(content, "new 1"))
	for _, tc := range []struct {
		tail int
		want string
	}{
		{-1, "new 1\nnew 2\nnew 3\n"},
		{2, "new 2\nnew 3\n"},
		{3, "new 1\nnew 2\nnew 3\n"},
		{10, "new 1\nnew 2\nnew 3\n"}, // --tail never reaches before --since
		{0, ""},
	} {
		var out bytes.Buffer
		if err := printLog(context.Background(), &out, p, offset, tc.tail, false); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("tail %d from %d: %q, want %q", tc.tail, offset, out.String(), tc.want)
		}
	}
	// An offset at the end (nothing since) prints nothing, with or without --tail.
	for _, n := range []int{-1, 5} {
		var out bytes.Buffer
		if err := printLog(context.Background(), &out, p, int64(len(content)), n, false); err != nil || out.Len() != 0 {
			t.Errorf("offset at end, tail %d: %q %v", n, out.String(), err)
		}
	}
}
