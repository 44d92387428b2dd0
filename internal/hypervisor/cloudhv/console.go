package cloudhv

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// startConsole starts the VM's console relay once the API answers: a direct-boot guest's
// virtio-console is a PTY whose path only vm.info knows; a UEFI guest's serial port is a
// socket CH serves. The relay exits by itself when cloud-hypervisor does.
func startConsole(ctx context.Context, a api, s hypervisor.VMSpec) error {
	ep := relay.Endpoint{Dial: serialPath(s.RunDir)}
	if s.Boot.Firmware == "" {
		pty, err := openConsolePTY(ctx, a)
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		defer pty.Close() // the relay holds its own copy
		ep = relay.Endpoint{FD: pty}
	}
	if _, err := relay.Start(relay.Options{Endpoint: ep, Socket: consolePath(s.RunDir), Log: consoleLogPath(s.LogDir)}); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// openConsolePTY opens the PTY that vm.info names, and asks vm.info again once it is open: a
// PTY's number is free for another program's terminal as soon as its owner exits, so only a
// cloud-hypervisor still answering (and still holding that PTY) after the open proves the
// device opened is this VM's console and not, say, another VM's.
func openConsolePTY(ctx context.Context, a api) (*os.File, error) {
	path, err := consolePTY(ctx, a)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open console PTY: %w", err)
	}
	again, err := consolePTY(ctx, a)
	if err == nil && again != path {
		err = fmt.Errorf("vm.info names console PTY %s, then %s", path, again)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func consolePTY(ctx context.Context, a api) (string, error) {
	info, err := a.info(ctx)
	if err != nil {
		return "", fmt.Errorf("find the console PTY: %w", err)
	}
	if info.Config.Console.Mode != "Pty" || info.Config.Console.File == "" {
		return "", fmt.Errorf("find the console PTY: vm.info reports console mode %q and file %q", info.Config.Console.Mode, info.Config.Console.File)
	}
	return info.Config.Console.File, nil
}
