package cloudhv

import (
	"context"
	"fmt"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// startConsole starts the VM's console relay once the API answers: a direct-boot guest's
// virtio-console is a PTY whose path only vm.info knows; a UEFI guest's serial port is a
// socket CH serves. The relay exits by itself when cloud-hypervisor does.
func startConsole(ctx context.Context, a api, s hypervisor.VMSpec) error {
	ep := relay.Endpoint{Dial: serialPath(s.RunDir)}
	if s.Boot.Firmware == "" {
		info, err := a.info(ctx)
		if err != nil {
			return fmt.Errorf("find the console PTY: %w", err)
		}
		if info.Config.Console.Mode != "Pty" || info.Config.Console.File == "" {
			return fmt.Errorf("find the console PTY: vm.info reports console mode %q and file %q", info.Config.Console.Mode, info.Config.Console.File)
		}
		ep = relay.Endpoint{PTY: info.Config.Console.File}
	}
	if _, err := relay.Start(relay.Options{Endpoint: ep, Socket: consolePath(s.RunDir), Log: consoleLogPath(s.LogDir)}); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}
