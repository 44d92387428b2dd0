// Package layer builds the guest agent's delivery payloads: an EROFS layer that the guest
// contract stacks on top of an OCI image's layers, and the files cloud-init installs.
//
// What the layer adds to the root, and why each file starts the agent without any change to
// the image:
//   - /usr/libexec/cocoon/cocoon-agent, the static binary;
//   - a systemd unit with its multi-user.target.wants symlink (systemd guests);
//   - /root/.profile, for busybox-init guests: their boot runs only /etc/inittab's entries,
//     and the one hook reachable without replacing an image file is the root login shell that
//     such images respawn on the console. It starts the agent in the background (once: the
//     agent holds a lock) and keeps the usual .profile duties (bash sources ~/.bashrc).
package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Paths inside the guest.
const (
	GuestBinary = "/usr/libexec/cocoon/cocoon-agent"
	UnitName    = "cocoon-agent.service"
)

// Unit is the systemd service that runs the agent. No default dependencies, so it starts as
// early as the boot transaction allows; KillMode=process so commands started through exec
// outlive an agent restart.
const Unit = `[Unit]
Description=Cocoon guest agent (vm exec, cp, port-forward)
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target

[Service]
ExecStart=` + GuestBinary + `
Restart=always
RestartSec=1
KillMode=process

[Install]
WantedBy=multi-user.target
`

// CloudUnit runs the agent from the layer mounted at dir (cloud images, where cloud-init
// mounts it through fstab).
func CloudUnit(dir string) string {
	return `[Unit]
Description=Cocoon guest agent (vm exec, cp, port-forward)
RequiresMountsFor=` + dir + `

[Service]
ExecStart=` + dir + GuestBinary + `
Restart=always
RestartSec=1
KillMode=process

[Install]
WantedBy=multi-user.target
`
}

const profile = `# ~/.profile: executed by Bourne-compatible login shells.
# From cocoon's agent layer: starts the guest agent on guests without systemd.
if [ "$BASH" ] && [ -f ~/.bashrc ]; then . ~/.bashrc; fi
if [ ! -d /run/systemd/system ] && [ -x ` + GuestBinary + ` ]; then
	` + GuestBinary + ` --background
fi
mesg n 2>/dev/null || true
`

type entry struct {
	path string
	mode os.FileMode
	data string // file content, or a symlink target for ModeSymlink
	from string // copy this host file instead of data
}

// Build writes the agent layer for binary (the host's cocoon-agent) to out.
func Build(ctx context.Context, binary, out string) error {
	stage, err := os.MkdirTemp(filepath.Dir(out), ".agent-layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	entries := []entry{
		{path: "usr", mode: os.ModeDir | 0o755}, {path: "usr/libexec", mode: os.ModeDir | 0o755},
		{path: "usr/libexec/cocoon", mode: os.ModeDir | 0o755},
		{path: strings.TrimPrefix(GuestBinary, "/"), mode: 0o755, from: binary},
		{path: "etc", mode: os.ModeDir | 0o755}, {path: "etc/systemd", mode: os.ModeDir | 0o755},
		{path: "etc/systemd/system", mode: os.ModeDir | 0o755},
		{path: "etc/systemd/system/" + UnitName, mode: 0o644, data: Unit},
		{path: "etc/systemd/system/multi-user.target.wants", mode: os.ModeDir | 0o755},
		{path: "etc/systemd/system/multi-user.target.wants/" + UnitName, mode: os.ModeSymlink, data: "/etc/systemd/system/" + UnitName},
		{path: "root", mode: os.ModeDir | 0o700},
		{path: "root/.profile", mode: 0o644, data: profile},
	}
	for _, e := range entries {
		if err := e.write(stage); err != nil {
			return fmt.Errorf("stage agent layer: %w", err)
		}
	}
	bin, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return errors.New("mkfs.erofs not found: install erofs-utils")
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-zlz4", "--quiet", "--all-root", out, stage)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mkfs.erofs %s: %w: %s", out, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func (e entry) write(root string) error {
	p := filepath.Join(root, e.path)
	switch {
	case e.mode.IsDir():
		if err := os.Mkdir(p, e.mode.Perm()); err != nil {
			return err
		}
		return os.Chmod(p, e.mode.Perm()) // umask-free
	case e.mode&os.ModeSymlink != 0:
		return os.Symlink(e.data, p)
	}
	data := []byte(e.data)
	if e.from != "" {
		var err error
		if data, err = os.ReadFile(e.from); err != nil {
			return fmt.Errorf("read guest agent binary: %w", err)
		}
	}
	if err := os.WriteFile(p, data, e.mode.Perm()); err != nil {
		return err
	}
	return os.Chmod(p, e.mode.Perm())
}
