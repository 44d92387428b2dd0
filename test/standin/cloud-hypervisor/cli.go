package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// options is the parsed command line, shaped as Cloud Hypervisor's VmConfig. vm is nil when
// no payload was given: CH then starts the VMM alone and waits for vm.create or vm.restore.
type options struct {
	apiSocket string
	version   bool
	vm        *vmConfig
}

// The options CH's parser knows, with the keys each accepts (a key outside the list is
// "unknown parameter", as CH's OptionParser says). Flags take no value.
var valueOpts = map[string][]string{
	"--api-socket": {"path", "fd"},
	"--cpus":       {"boot", "max", "topology", "kvm_hyperv", "max_phys_bits", "affinity", "features", "nested", "core_scheduling"},
	"--memory":     {"size", "mergeable", "shared", "hugepages", "hugepage_size", "hotplug_size", "hotplugged_size", "hotplug_method", "prefault", "thp"},
	"--kernel":     nil, "--firmware": nil, "--initramfs": nil, "--cmdline": nil,
	"--rng":      {"src", "iommu"},
	"--balloon":  {"id", "size", "deflate_on_oom", "free_page_reporting"},
	"--serial":   nil,
	"--console":  nil,
	"--vsock":    {"cid", "socket", "iommu", "id", "pci_segment"},
	"--platform": {"num_pci_segments", "iommu_segments", "serial_number", "uuid", "oem_strings"},
	"--log-file": nil,
	"--seccomp":  nil,
}

var multiOpts = map[string][]string{
	"--disk": {"path", "readonly", "direct", "iommu", "queue_size", "num_queues", "vhost_user", "socket", "bw_size",
		"bw_one_time_burst", "bw_refill_time", "ops_size", "ops_one_time_burst", "ops_refill_time", "id", "pci_segment",
		"serial", "rate_limit_group", "queue_affinity", "backing_files", "sparse", "image_type", "lock_granularity"},
	"--net": {"tap", "ip", "mask", "mac", "host_mac", "mtu", "iommu", "queue_size", "num_queues", "vhost_user", "socket",
		"vhost_mode", "id", "fd", "bw_size", "bw_one_time_burst", "bw_refill_time", "ops_size", "ops_one_time_burst",
		"ops_refill_time", "pci_segment", "offload_tso", "offload_ufo", "offload_csum"},
}

var flagOpts = []string{"--watchdog", "--pvpanic", "--version", "-V", "-v", "--iommu"}

// parseArgs reads argv as CH would accept it; anything CH refuses is an error.
func parseArgs(args []string) (options, error) {
	var o options
	vals := map[string]string{}
	multi := map[string][]string{}
	flags := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case slices.Contains(flagOpts, a):
			flags[a] = true
		case valueOpts[a] != nil || hasKey(valueOpts, a):
			if i+1 >= len(args) {
				return o, fmt.Errorf("a value is required for '%s <%s>' but none was supplied", a, strings.TrimPrefix(a, "--"))
			}
			if _, dup := vals[a]; dup {
				return o, fmt.Errorf("the argument '%s' cannot be used multiple times", a)
			}
			i++
			vals[a] = args[i]
		case multiOpts[a] != nil:
			n := 0
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				multi[a] = append(multi[a], args[i])
				n++
			}
			if n == 0 {
				return o, fmt.Errorf("a value is required for '%s' but none was supplied", a)
			}
		default:
			return o, fmt.Errorf("unexpected argument '%s' found", a)
		}
	}
	if flags["--version"] || flags["-V"] {
		o.version = true
		return o, nil
	}
	for opt, v := range vals {
		if keys := valueOpts[opt]; keys != nil {
			if _, err := parseKV(opt, v, keys); err != nil && !(opt == "--api-socket" && !strings.Contains(v, "=")) {
				return o, err
			}
		}
	}
	if s, ok := vals["--api-socket"]; ok {
		kv, _ := parseKV("--api-socket", s, valueOpts["--api-socket"])
		switch {
		case !strings.Contains(s, "="):
			o.apiSocket = s
		case kv["path"] != "":
			o.apiSocket = kv["path"]
		default:
			return o, fmt.Errorf("--api-socket: only path= is supported by this stand-in")
		}
	}
	if vals["--kernel"] == "" && vals["--firmware"] == "" {
		for _, opt := range []string{"--cpus", "--memory", "--initramfs", "--cmdline", "--rng", "--balloon", "--serial", "--console", "--vsock"} {
			if _, ok := vals[opt]; ok {
				return o, fmt.Errorf("error parsing command line: %s given without a payload: --kernel or --firmware is required", opt)
			}
		}
		if len(multi) > 0 {
			return o, fmt.Errorf("error parsing command line: devices given without a payload: --kernel or --firmware is required")
		}
		return o, nil
	}
	vm, err := buildConfig(vals, multi, flags)
	if err != nil {
		return o, err
	}
	o.vm = vm
	return o, nil
}

func hasKey(m map[string][]string, k string) bool { _, ok := m[k]; return ok }

// parseKV splits "a=1,b=[x,y],c=z" at top-level commas (brackets nest, as in CH's parser).
func parseKV(opt, s string, known []string) (map[string]string, error) {
	out := map[string]string{}
	depth, start := 0, 0
	var parts []string
	for i, r := range s {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, s[start:])
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("error parsing %s: invalid parameter %q (expected key=value)", opt, p)
		}
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("error parsing %s: unknown parameter %q", opt, k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("error parsing %s: parameter %q given twice", opt, k)
		}
		out[k] = v
	}
	return out, nil
}

func parseBool(opt, k, v string) (bool, error) {
	switch v {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("error parsing %s: %s=%q is not on or off", opt, k, v)
}

// parseSize reads CH's sizes: bytes, or a K/M/G suffix.
func parseSize(opt, k, v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "K"):
		mult, v = 1<<10, strings.TrimSuffix(v, "K")
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, strings.TrimSuffix(v, "M")
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, strings.TrimSuffix(v, "G")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("error parsing %s: %s=%q is not a size", opt, k, v)
	}
	return n * mult, nil
}

func parseUint(opt, k, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("error parsing %s: %s=%q is not a number", opt, k, v)
	}
	return n, nil
}

// parseList reads "[3,4]".
func parseList(opt, k, v string) ([]int, error) {
	if !strings.HasPrefix(v, "[") || !strings.HasSuffix(v, "]") {
		return nil, fmt.Errorf("error parsing %s: %s=%q is not a list like [3,4]", opt, k, v)
	}
	var out []int
	for _, e := range strings.Split(strings.Trim(v, "[]"), ",") {
		n, err := parseUint(opt, k, e)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
