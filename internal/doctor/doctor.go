// Package doctor checks that a host can run Cocoon VMs and, when asked, fixes what it safely
// can: it creates Cocoon's directories, sets the sysctls VMs need (persisted under
// /etc/sysctl.d) and writes a default bridge conflist. It never installs packages or changes
// firewall rules. Every path it reads or writes is in Options, so tests point it at temp dirs.
package doctor

import (
	"context"
	"fmt"
)

// Status of one check.
type Status string

// Statuses, from best to worst; FIXED means --fix changed something and it now passes.
const (
	Pass  Status = "PASS"
	Fixed Status = "FIXED"
	Warn  Status = "WARN"
	Fail  Status = "FAIL"
)

// Result is one line of the report.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"` // what to do about a WARN or FAIL
}

// Options say where things are; the CLI fills them from the configuration.
type Options struct {
	RootDir, RunDir, LogDir, MemoryDir   string
	CNIConfDir, CNIBinDir                string
	QEMUBinary                           string
	FirmwareCode, FirmwareVars           string
	FirmwareCodeARM64, FirmwareVarsARM64 string

	ProcSys   string // /proc/sys
	SysctlDir string // /etc/sysctl.d, where --fix persists sysctls
	NetnsDir  string // /var/run/netns
	KSMDir    string // /sys/kernel/mm/ksm
	// MemoryMerge is the memory_merge setting: KSM must then run, and --fix starts it.
	MemoryMerge bool
	Subnet      string // for the default conflist: 10.88.0.0/16
	KVMProblem  func() string
	Backends    []Backend // the registered hypervisor backends
	Fix         bool
}

// Backend is one hypervisor backend, as doctor checks it.
type Backend struct {
	Name      string
	Available func() error // nil when the backend can run VMs here
}

// check is one named check; fix (may be nil) repairs what run found wrong.
type check struct {
	name string
	run  func(ctx context.Context, o *Options) Result
	fix  func(o *Options) error
}

// Run runs every check in order, fixing failures and warnings that have a fix when o.Fix.
func Run(ctx context.Context, o Options) []Result {
	var out []Result
	for _, c := range checks(&o) {
		r := c.run(ctx, &o)
		r.Name = c.name
		if o.Fix && c.fix != nil && (r.Status == Warn || r.Status == Fail) {
			if err := c.fix(&o); err != nil {
				r.Status, r.Detail, r.Hint = Fail, fmt.Sprintf("%s; fix failed: %v", r.Detail, err), ""
			} else if again := c.run(ctx, &o); again.Status == Pass {
				r = Result{Name: c.name, Status: Fixed, Detail: again.Detail}
			}
		}
		out = append(out, r)
	}
	return out
}

// Failed reports whether any check failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}
