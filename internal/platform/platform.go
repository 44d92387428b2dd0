// Package platform names the guest platforms cocoon runs (linux/amd64 and linux/arm64), in
// the OS/architecture form Docker's --platform uses.
package platform

import (
	"fmt"
	"runtime"
	"strings"
)

// The platforms guests can have.
const (
	AMD64 = "linux/amd64"
	ARM64 = "linux/arm64"
)

// All lists the supported platforms, host-independent order.
var All = []string{AMD64, ARM64}

// Host is the platform of this machine's CPU.
func Host() string { return "linux/" + runtime.GOARCH }

// Parse checks a --platform value; "" means the host's. Docker's "arm64/v8" variant spelling
// is accepted for arm64, the only variant these guests have.
func Parse(s string) (string, error) {
	p := strings.ToLower(strings.TrimSpace(s))
	switch p {
	case "":
		return Host(), nil
	case AMD64, ARM64:
		return p, nil
	case ARM64 + "/v8":
		return ARM64, nil
	}
	return "", fmt.Errorf("unknown platform %q: use %s or %s", s, AMD64, ARM64)
}

// Arch is the architecture part of a platform ("amd64", "arm64").
func Arch(p string) string { return strings.TrimPrefix(p, "linux/") }

// Or returns p, or the host's platform for records made before platforms were recorded.
func Or(p string) string {
	if p == "" {
		return Host()
	}
	return p
}
