package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/engine"
)

type forward struct {
	addr   string // host listen address
	remote int
}

// parseForward parses [ADDR:]LOCAL:REMOTE (LOCAL 0 picks a free port).
func parseForward(s string) (forward, error) {
	parts := strings.Split(s, ":")
	addr := "127.0.0.1"
	if len(parts) == 3 {
		addr, parts = parts[0], parts[1:]
	}
	bad := fmt.Errorf("invalid forward %q: use [ADDR:]LOCAL:REMOTE, e.g. 8080:80", s)
	if len(parts) != 2 || net.ParseIP(addr) == nil && addr != "localhost" {
		return forward{}, bad
	}
	local, err1 := strconv.Atoi(parts[0])
	remote, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || local < 0 || local > 65535 || remote < 1 || remote > 65535 {
		return forward{}, bad
	}
	return forward{addr: net.JoinHostPort(addr, parts[0]), remote: remote}, nil
}

func (a *app) vmPortForward() *cobra.Command {
	return &cobra.Command{
		Use:   "port-forward VM [ADDR:]LOCAL:REMOTE...",
		Short: "Forward host TCP ports to 127.0.0.1:REMOTE in a running VM (through the guest agent)",
		Long: "Listen on host TCP ports (ADDR defaults to 127.0.0.1; LOCAL 0 picks a free port) and tunnel\n" +
			"each connection through the guest agent to 127.0.0.1:REMOTE in the guest, so it works\n" +
			"without guest networking (--nics 0). Runs until interrupted.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fwds []forward
			for _, s := range args[1:] {
				f, err := parseForward(s)
				if err != nil {
					return err
				}
				fwds = append(fwds, f)
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			dial, vm, err := e.AgentDialer(ctx, args[0])
			if err != nil {
				return err
			}
			var lns []net.Listener
			defer func() {
				for _, ln := range lns {
					ln.Close()
				}
			}()
			for _, f := range fwds {
				ln, err := net.Listen("tcp", f.addr)
				if err != nil {
					return fmt.Errorf("listen on %s: %w", f.addr, err)
				}
				lns = append(lns, ln)
				fmt.Fprintf(a.stdout, "Forwarding from %s -> %s:%d\n", ln.Addr(), vm.Name, f.remote)
				go serveForward(ctx, ln, dial, f.remote, a)
			}
			<-ctx.Done()
			return nil
		},
	}
}

func serveForward(ctx context.Context, ln net.Listener, dial client.Dialer, remote int, a *app) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			s, err := client.Start(ctx, dial, proto.Frame{Type: proto.TypeConnect, Port: remote})
			if err != nil {
				fmt.Fprintf(a.stderr, "forward %s -> %d: %v\n", c.RemoteAddr(), remote, err)
				return
			}
			defer s.Close()
			go s.SendStdin(c) //nolint:errcheck // ends with the connection
			_, _ = s.Wait(ctx, c, nil)
		}()
	}
}
