package platform

import (
	"runtime"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"": "linux/" + runtime.GOARCH, "linux/amd64": AMD64, "Linux/ARM64": ARM64, "linux/arm64/v8": ARM64,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"linux/riscv64", "windows/amd64", "arm64", "linux/amd64/v3"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
