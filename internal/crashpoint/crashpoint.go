// Package crashpoint lets the crash-injection tests stop a command deterministically: with
// COCOON_CRASH_POINT=N in the environment, the Nth call of Hit in the process SIGKILLs it.
// Hit is called between durable steps (before and after each atomic index write, before each
// step of a multi-step operation). COCOON_CRASH_AT=NAME kills the process at the named point
// (At) instead, for tests of one precise window; COCOON_CRASH_AT=NAME:stop stops it there
// (SIGSTOP) so a test can act while the command holds its locks, then SIGCONT it. Unset, as
// everywhere outside tests, Hit and At are one comparison.
package crashpoint

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// Env is the variable holding the 1-based crash point; EnvAt the name of a named one.
const (
	Env   = "COCOON_CRASH_POINT"
	EnvAt = "COCOON_CRASH_AT"
)

var (
	target, _ = strconv.ParseInt(os.Getenv(Env), 10, 64)
	named     = os.Getenv(EnvAt)
	count     atomic.Int64
)

// Hit counts one crash point and kills the process with SIGKILL when it is the chosen one.
func Hit() {
	if target > 0 && count.Add(1) == target {
		kill()
	}
}

// At is the crash point name: it kills the process when COCOON_CRASH_AT names it, and also
// counts as one Hit so that seeded injections can land there.
func At(name string) {
	if named != "" {
		switch named {
		case name:
			kill()
		case name + ":stop":
			syscall.Kill(os.Getpid(), syscall.SIGSTOP) //nolint:errcheck // resumes on SIGCONT
		}
	}
	Hit()
}

func kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL) //nolint:errcheck // nothing runs after it
}
