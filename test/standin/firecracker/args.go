package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// options are the parts of Firecracker's command line the stand-in acts on.
type options struct {
	apiSock, id, logPath, level string
	version                     bool
}

// valueFlags and boolFlags are Firecracker 1.14's command-line options (firecracker --help);
// the stand-in accepts all of them, as the real binary does, and acts on the ones above.
var (
	valueFlags = map[string]bool{"api-sock": true, "id": true, "log-path": true, "level": true, "module": true,
		"config-file": true, "metadata": true, "metrics-path": true, "seccomp-filter": true, "start-time-us": true,
		"start-time-cpu-us": true, "parent-cpu-time-us": true, "http-api-max-payload-size": true,
		"mmds-size-limit": true, "describe-snapshot": true}
	boolFlags = map[string]bool{"version": true, "help": true, "no-api": true, "no-seccomp": true, "boot-timer": true,
		"show-level": true, "show-log-origin": true, "enable-pci": true, "snapshot-version": true}
	levels     = map[string]bool{"off": true, "trace": true, "debug": true, "info": true, "warn": true, "warning": true, "error": true}
	instanceID = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

func parseArgs(args []string) (options, error) {
	o := options{apiSock: "/run/firecracker.socket", id: "anonymous-instance", level: "Warning"}
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			return o, fmt.Errorf("found argument '%s' which wasn't expected, or isn't valid in this context", a)
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		switch {
		case boolFlags[name]:
			if hasVal {
				return o, fmt.Errorf("argument '--%s' does not take a value", name)
			}
		case valueFlags[name]:
			if !hasVal {
				if i+1 >= len(args) {
					return o, fmt.Errorf("argument '--%s' requires a value", name)
				}
				i++
				val = args[i]
			}
		default:
			return o, fmt.Errorf("found argument '--%s' which wasn't expected, or isn't valid in this context", name)
		}
		if seen[name] {
			return o, fmt.Errorf("the argument '--%s' was provided more than once", name)
		}
		seen[name] = true
		switch name {
		case "version":
			o.version = true
		case "api-sock":
			o.apiSock = val
		case "id":
			if !instanceID.MatchString(val) {
				return o, fmt.Errorf("invalid instance ID: %q", val)
			}
			o.id = val
		case "log-path":
			o.logPath = val
		case "level":
			if !levels[strings.ToLower(val)] {
				return o, fmt.Errorf("invalid value for --level: %q", val)
			}
			o.level = val
		case "no-api", "config-file":
			return o, fmt.Errorf("the stand-in serves the API only: --%s is not supported", name)
		case "http-api-max-payload-size", "mmds-size-limit", "start-time-us", "start-time-cpu-us", "parent-cpu-time-us":
			if _, err := strconv.ParseUint(val, 10, 64); err != nil {
				return o, fmt.Errorf("invalid value for --%s: %q", name, val)
			}
		}
	}
	if o.apiSock == "" {
		return o, fmt.Errorf("--api-sock must not be empty")
	}
	return o, nil
}
