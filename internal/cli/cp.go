package cli

import (
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/agent/tarx"
	"github.com/cocoonstack/cocoon/internal/engine"
)

// splitVMPath splits "VM:/path"; a host path (no colon, or a slash before the first colon)
// gives ok=false.
func splitVMPath(arg string) (vm, p string, ok bool) {
	i := strings.Index(arg, ":")
	if i <= 0 || strings.Contains(arg[:i], "/") {
		return "", "", false
	}
	return arg[:i], arg[i+1:], true
}

func (a *app) vmCp() *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directory trees between the host and a running VM (through the guest agent)",
		Long: "Copy between the host and a VM, one side written VM:/path. Trees keep modes, owners and\n" +
			"mtimes. As with docker cp, a destination that is an existing directory receives the source\n" +
			"inside it, otherwise the source is created as the destination. '-' as SRC reads a tar\n" +
			"stream from stdin (extracted into the VM directory DST); as DST it writes a tar to stdout.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcVM, srcPath, srcIn := splitVMPath(args[0])
			dstVM, dstPath, dstIn := splitVMPath(args[1])
			switch {
			case srcIn == dstIn:
				return fmt.Errorf("exactly one of SRC and DST must be VM:/path (got %q and %q)", args[0], args[1])
			case srcIn && !path.IsAbs(srcPath), dstIn && !path.IsAbs(dstPath):
				return fmt.Errorf("the VM side must be an absolute path: VM:/path")
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if dstIn {
				return a.copyIn(ctx, e, args[0], dstVM, dstPath)
			}
			return a.copyOut(ctx, e, srcVM, srcPath, args[1])
		},
	}
}

func (a *app) copyIn(ctx context.Context, e *engine.Engine, src, vm, dst string) error {
	dial, _, err := e.AgentDialer(ctx, vm)
	if err != nil {
		return err
	}
	req := proto.Frame{Type: proto.TypeCopyIn, Path: dst}
	var in io.Reader = a.stdin
	if src != "-" {
		pr, pw := io.Pipe()
		go func() {
			_, err := tarx.Pack(pw, src)
			pw.CloseWithError(err)
		}()
		defer pr.Close()
		in = pr
		req.Name = filepath.Base(filepath.Clean(src))
	}
	s, err := client.Start(ctx, dial, req)
	if err != nil {
		return fmt.Errorf("copy into VM %s: %w", vm, err)
	}
	defer s.Close()
	sendErr := make(chan error, 1)
	go func() { sendErr <- s.SendStdin(in) }()
	if _, err := s.Wait(ctx, nil, nil); err != nil {
		return fmt.Errorf("copy into VM %s:%s: %w", vm, dst, err)
	}
	select {
	case err := <-sendErr:
		if err != nil {
			return fmt.Errorf("copy into VM %s: %w", vm, err)
		}
	default:
	}
	return nil
}

func (a *app) copyOut(ctx context.Context, e *engine.Engine, vm, src, dst string) error {
	dial, _, err := e.AgentDialer(ctx, vm)
	if err != nil {
		return err
	}
	s, err := client.Start(ctx, dial, proto.Frame{Type: proto.TypeCopyOut, Path: src})
	if err != nil {
		return fmt.Errorf("copy from VM %s: %w", vm, err)
	}
	defer s.Close()
	if err := s.CloseStdin(); err != nil {
		return err
	}
	if dst == "-" {
		if _, err := s.Wait(ctx, a.stdout, nil); err != nil {
			return fmt.Errorf("copy from VM %s:%s: %w", vm, src, err)
		}
		return nil
	}
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		err := tarx.Extract(ctx, pr, dst, path.Base(src), true)
		pr.CloseWithError(err) // stops Wait's writes if extraction failed
		extracted <- err
	}()
	_, err = s.Wait(ctx, pw, nil)
	pw.CloseWithError(err)
	if xerr := <-extracted; xerr != nil {
		return fmt.Errorf("copy from VM %s:%s to %s: %w", vm, src, dst, xerr)
	}
	if err != nil {
		return fmt.Errorf("copy from VM %s:%s: %w", vm, src, err)
	}
	return nil
}
