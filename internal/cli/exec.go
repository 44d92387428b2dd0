package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/engine"
)

// Exit codes of vm exec besides the command's own, as docker exec has them.
const (
	exitExecFailed = 125 // cocoon could not run the command (no agent, VM stopped, …)
	exitTimeout    = 124 // --timeout expired (as timeout(1))
)

// exitStatus makes cocoon exit with a code and print nothing (the command's own status).
type exitStatus int

func (e exitStatus) Error() string { return "" }
func (e exitStatus) ExitCode() int { return int(e) }

// execError is a failure of cocoon itself during vm exec.
type execError struct {
	err  error
	code int
}

func (e *execError) Error() string { return e.err.Error() }
func (e *execError) Unwrap() error { return e.err }
func (e *execError) ExitCode() int { return e.code }

func (a *app) vmExec() *cobra.Command {
	var interactive, tty bool
	var env []string
	var dir, user string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "exec [flags] VM -- CMD [ARG...]",
		Short: "Run a command in a running VM through its guest agent",
		Long: "Run a command in the VM through the guest agent (no SSH, no guest network needed).\n" +
			"stdout and stderr stay apart and the command's exit code becomes cocoon's. Exit codes of\n" +
			"cocoon itself: 125 (could not run: no agent, VM not running, …), 124 (--timeout expired),\n" +
			"127/126 (command not found / not executable, as a shell).",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return fmt.Errorf("no command given: cocoon vm exec VM -- CMD [ARG...]")
			}
			envMap := map[string]string{}
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("invalid -e %q: use KEY=VALUE", kv)
				}
				envMap[k] = v
			}
			req := proto.Frame{Type: proto.TypeExec, Argv: argv, Env: envMap, Dir: dir, User: user, TTY: tty}
			if tty {
				if !term.IsTerminal(int(a.stdin.Fd())) {
					return &execError{errors.New("-t needs a terminal on stdin (drop -t when piping)"), exitExecFailed}
				}
				if w, h, err := term.GetSize(int(a.stdin.Fd())); err == nil {
					req.Cols, req.Rows = uint16(w), uint16(h)
				}
				if _, ok := envMap["TERM"]; !ok {
					if t := os.Getenv("TERM"); t != "" {
						envMap["TERM"] = t
					}
				}
			}
			return a.runExec(cmd.Context(), args[0], req, interactive, timeout)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "stream stdin to the command")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a terminal in the guest (local terminal in raw mode)")
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "set an environment variable (KEY=VALUE, repeatable)")
	cmd.Flags().StringVarP(&dir, "workdir", "w", "", "working directory in the guest (default: the user's home)")
	cmd.Flags().StringVarP(&user, "user", "u", "", "guest user name or uid (default root)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "kill the command after this long (e.g. 30s; 0 = no limit)")
	return cmd
}

func (a *app) runExec(ctx context.Context, ref string, req proto.Frame, interactive bool, timeout time.Duration) error {
	e, err := a.engine(engine.Options{})
	if err != nil {
		return &execError{err, exitExecFailed}
	}
	dial, _, err := e.AgentDialer(ctx, ref)
	if err != nil {
		return &execError{err, exitExecFailed}
	}
	// Interrupts are forwarded to the command instead of ending cocoon; --timeout kills it.
	ctx = context.WithoutCancel(ctx)
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	s, err := client.Start(ctx, dial, req)
	if err != nil {
		return &execError{fmt.Errorf("exec in VM %s: %w", ref, err), exitExecFailed}
	}
	defer s.Close()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			switch sig {
			case syscall.SIGWINCH:
				if w, h, err := term.GetSize(int(a.stdin.Fd())); err == nil && req.TTY {
					_ = s.Resize(uint16(h), uint16(w))
				}
			case syscall.SIGINT:
				_ = s.Signal("INT")
			case syscall.SIGTERM:
				_ = s.Signal("TERM")
			case syscall.SIGHUP:
				_ = s.Signal("HUP")
			}
		}
	}()
	if req.TTY {
		old, err := term.MakeRaw(int(a.stdin.Fd()))
		if err != nil {
			return &execError{fmt.Errorf("put the terminal in raw mode: %w", err), exitExecFailed}
		}
		defer term.Restore(int(a.stdin.Fd()), old) //nolint:errcheck
	}
	if interactive {
		go s.SendStdin(a.stdin) //nolint:errcheck // a lost session shows in Wait
	} else if err := s.CloseStdin(); err != nil {
		return &execError{fmt.Errorf("exec in VM %s: %w", ref, err), exitExecFailed}
	}
	code, err := s.Wait(ctx, a.stdout, a.stderr)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &execError{fmt.Errorf("command in VM %s killed after --timeout %s", ref, timeout), exitTimeout}
	case err != nil:
		return &execError{fmt.Errorf("exec in VM %s: %w", ref, err), exitExecFailed}
	case code != 0:
		return exitStatus(code)
	}
	return nil
}
