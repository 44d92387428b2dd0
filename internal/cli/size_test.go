package cli

import "testing"

// Sizes take the original's forms: docker units and plain byte counts.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"21474836480": 20 << 30, "536870912": 512 << 20, "1G": 1 << 30, "512M": 512 << 20, "1.5G": 3 << 29, "1GiB": 1 << 30} {
		if got, err := parseSize("--memory", in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1G", "lots", ""} {
		if _, err := parseSize("--memory", in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
