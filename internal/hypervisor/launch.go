package hypervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/store"
)

// LaunchOptions describe one detached hypervisor process.
type LaunchOptions struct {
	Binary     string
	Args       []string
	ExtraFiles []*os.File // become fds 3, 4, … in the child
	Stdio      *os.File   // stdin and stdout of the child when set (a console PTY)
	Netns      string     // network namespace (path) the child starts in; "" = the caller's
	Dir        string     // working directory of the child; "" = the caller's
	LogPath    string     // stdout and stderr are appended here
	PIDPath    string     // "<pid>\n" is written here once the process runs
	// NoHugePages keeps the process off transparent huge pages (see startWithHugePages).
	NoHugePages bool
}

// Child is a hypervisor process started by this process. Once the launching CLI exits the
// hypervisor is re-parented; later commands use Open with a VMRef instead.
type Child struct {
	Process
	proc   *os.Process
	exited chan struct{}
}

// Exited is closed when the process has exited (and was reaped).
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Kill sends SIGKILL and waits until the process is gone; used to undo a failed start.
func (c *Child) Kill() {
	_ = c.proc.Kill() // os.Process signals through its pidfd: never a reused PID
	<-c.exited
}

// Launch starts a hypervisor in its own session (no controlling terminal, no SIGHUP when the
// CLI's terminal goes away), with stdin on /dev/null and output appended to the log file, and
// writes its PID file. The process is reaped in the background while this process lives.
func Launch(opts LaunchOptions) (*Child, error) {
	logFile, err := os.OpenFile(opts.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open hypervisor log: %w", err)
	}
	defer logFile.Close() // the child has its own copy

	cmd := exec.Command(opts.Binary, opts.Args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if opts.Stdio != nil {
		cmd.Stdin, cmd.Stdout = opts.Stdio, opts.Stdio
	}
	cmd.ExtraFiles = opts.ExtraFiles
	cmd.Dir = opts.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startWithHugePages(!opts.NoHugePages, func() error { return startIn(opts.Netns, cmd) }); err != nil {
		return nil, fmt.Errorf("launch %s: %w", opts.Binary, err)
	}
	child := &Child{
		Process: Process{PID: cmd.Process.Pid, Binary: opts.Binary},
		proc:    cmd.Process,
		exited:  make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(child.exited)
	}()

	if child.StartTime, err = StartTime(child.PID); err == nil {
		err = store.WriteRuntimeFile(opts.PIDPath, []byte(strconv.Itoa(child.PID)+"\n"), 0o600)
	}
	if err != nil {
		child.Kill()
		_ = os.Remove(opts.PIDPath)
		return nil, fmt.Errorf("record pid of %s: %w", opts.Binary, err)
	}
	return child, nil
}

// StartTime reads a process's start time (clock ticks since boot, field 22 of /proc/<pid>/stat).
func StartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses: split after the last ')'.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[end+1:]) // fields[0] is field 3 (state)
	const startTimeField = 22 - 3
	if len(fields) <= startTimeField {
		return 0, fmt.Errorf("parse /proc/%d/stat: only %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[startTimeField], 10, 64)
}

// ReadPIDFile returns the PID recorded in path, or 0 when the file does not exist.
func ReadPIDFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid", path, strings.TrimSpace(string(data)))
	}
	return pid, nil
}

// forkTHP serialises the THP setting of this process with the forks that inherit it.
var forkTHP sync.Mutex

// startWithHugePages runs start (a fork and exec) with transparent huge pages allowed or not
// for the child: PR_SET_THP_DISABLE is a flag of the whole process, inherited by a child and
// kept across its exec, so it is set for this process just around the fork. QEMU under TCG
// asks for huge pages on its translated-code buffer, and the kernel then backs every 2 MiB of
// it that the guest's code touches with a whole huge page: an idle clone of a small guest held
// 12 MiB of them where its code took 8 MiB of 4 KiB pages (31 → 27 MiB private in all).
func startWithHugePages(allow bool, start func() error) error {
	forkTHP.Lock()
	defer forkTHP.Unlock()
	if allow {
		return start()
	}
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("disable transparent huge pages: %w", err)
	}
	err := start()
	if cerr := unix.Prctl(unix.PR_SET_THP_DISABLE, 0, 0, 0, 0); cerr != nil {
		return errors.Join(err, fmt.Errorf("re-enable transparent huge pages: %w", cerr))
	}
	return err
}

// startIn starts cmd inside the network namespace at path: the forking thread enters it and
// the child inherits it (what `ip netns exec` does), so a hypervisor that opens TAPs by name
// finds them.
func startIn(path string, cmd *exec.Cmd) error {
	if path == "" {
		return cmd.Start()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	startErr := cmd.Start()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, so it dies with its goroutine instead of serving others
		// from the wrong namespace.
		return errors.Join(startErr, fmt.Errorf("leave netns %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return startErr
}
