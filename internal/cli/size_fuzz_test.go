package cli

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseSize: a size flag is a positive byte count or a one-line error naming the flag.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512M", "1G", "1.5GiB", "0", "-1G", "1e3", "9999999999999999999G", "1kb", " 2g", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize("--memory", s)
		if err != nil {
			if !strings.Contains(err.Error(), "--memory") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not name the flag on one line", err)
			}
			return
		}
		if n <= 0 {
			t.Fatalf("parseSize(%q) = %d: sizes must be positive", s, n)
		}
	})
}

func TestParseSizeUnits(t *testing.T) {
	for k := int64(1); k < 1<<20; k = k*3 + 1 {
		for suffix, shift := range map[string]uint{"M": 20, "G": 30, "MiB": 20, "k": 10} {
			if n, err := parseSize("--memory", strconv.FormatInt(k, 10)+suffix); err != nil || n != k<<shift {
				t.Fatalf("%d%s = %d, %v; want %d", k, suffix, n, err, k<<shift)
			}
		}
	}
}
