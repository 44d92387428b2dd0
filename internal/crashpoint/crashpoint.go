// Package crashpoint lets the crash-injection tests stop a command deterministically: with
// COCOON_CRASH_POINT=N in the environment, the Nth call of Hit in the process SIGKILLs it.
// Hit is called between durable steps (before and after each atomic index write, before each
// step of a multi-step operation). Unset, as everywhere outside tests, Hit is one comparison.
package crashpoint

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// Env is the variable holding the 1-based crash point.
const Env = "COCOON_CRASH_POINT"

var (
	target, _ = strconv.ParseInt(os.Getenv(Env), 10, 64)
	count     atomic.Int64
)

// Hit counts one crash point and kills the process with SIGKILL when it is the chosen one.
func Hit() {
	if target > 0 && count.Add(1) == target {
		syscall.Kill(os.Getpid(), syscall.SIGKILL) //nolint:errcheck // nothing runs after it
	}
}
