package cloudinit

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
)

var (
	userRE       = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	hostnameRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)
	instanceIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)
	serialRE     = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,19}$`)
)

// ValidateUser checks a --user value; empty means root.
func ValidateUser(user string) error {
	if user != "" && !userRE.MatchString(user) {
		return fmt.Errorf("--user %q is invalid: must be a lowercase Linux username (letters, digits, underscores, hyphens)", user)
	}
	return nil
}

// ValidatePassword checks a --password value; empty means "set no password". The shell characters
// are refused for compatibility with the original CLI (this package never puts the password in a
// shell); control characters would split chpasswd's "user:password" lines; R and RANDOM make
// cloud-init generate a random password instead.
func ValidatePassword(pw string) error {
	if strings.ContainsAny(pw, "`$;|&(){}\\<>!") {
		return fmt.Errorf("--password contains unsafe shell characters (backtick, $, ;, |, &, etc.)")
	}
	if strings.ContainsFunc(pw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("--password contains control characters (newline, tab, …): use printable characters only")
	}
	if pw == "R" || pw == "RANDOM" {
		return fmt.Errorf("--password %q is reserved by cloud-init (it would set a random password): choose another", pw)
	}
	return nil
}

func (s Seed) validate() error {
	if !instanceIDRE.MatchString(s.InstanceID) {
		return fmt.Errorf("cloud-init instance id %q is invalid: must match %s (it becomes a directory name in the guest)", s.InstanceID, instanceIDRE)
	}
	if !hostnameRE.MatchString(s.Hostname) {
		return fmt.Errorf("hostname %q is invalid: must match %s", s.Hostname, hostnameRE)
	}
	if err := ValidateUser(s.User); err != nil {
		return err
	}
	if err := ValidatePassword(s.Password); err != nil {
		return err
	}
	seen := map[string]int{}
	for i, nic := range s.NICs {
		mac, err := net.ParseMAC(nic.MAC)
		if err != nil || len(mac) != 6 {
			return fmt.Errorf("NIC %d: MAC %q is invalid: want six hex pairs like aa:bb:cc:dd:ee:ff", i, nic.MAC)
		}
		if j, dup := seen[mac.String()]; dup {
			return fmt.Errorf("NIC %d: MAC %s is already used by NIC %d: each NIC needs its own MAC", i, mac, j)
		}
		seen[mac.String()] = i
		if err := nic.validateAddress(); err != nil {
			return fmt.Errorf("NIC %d: %w", i, err)
		}
	}
	for _, d := range s.DNS {
		if net.ParseIP(d) == nil {
			return fmt.Errorf("DNS server %q is not an IP address", d)
		}
	}
	for _, m := range s.Mounts {
		if !serialRE.MatchString(m.Serial) {
			return fmt.Errorf("mount of disk %q: serial must match %s", m.Serial, serialRE)
		}
		if !filepath.IsAbs(m.MountPoint) || strings.ContainsFunc(m.MountPoint, isSpaceOrControl) {
			return fmt.Errorf("mount of disk %q: mount point %q must be an absolute path without spaces", m.Serial, m.MountPoint)
		}
		if m.FSType == "" || strings.ContainsFunc(m.FSType, isSpaceOrControl) {
			return fmt.Errorf("mount of disk %q: filesystem type %q is invalid", m.Serial, m.FSType)
		}
	}
	for _, u := range s.Units {
		if !unitRE.MatchString(u.Name) {
			return fmt.Errorf("systemd unit name %q must match %s", u.Name, unitRE)
		}
	}
	return nil
}

var unitRE = regexp.MustCompile(`^[a-zA-Z0-9_.@-]{1,64}\.service$`)

func (n NIC) validateAddress() error {
	if n.IP == "" {
		if n.Prefix != 0 || n.Gateway != "" {
			return fmt.Errorf("prefix/gateway given without an IP: set IP for a static NIC or leave all three empty for DHCP")
		}
		return nil
	}
	if ip := net.ParseIP(n.IP); ip == nil || ip.To4() == nil {
		return fmt.Errorf("IP %q is not an IPv4 address", n.IP)
	}
	if n.Prefix < 1 || n.Prefix > 32 {
		return fmt.Errorf("prefix length %d for %s is out of range 1-32", n.Prefix, n.IP)
	}
	if n.Gateway != "" {
		if gw := net.ParseIP(n.Gateway); gw == nil || gw.To4() == nil {
			return fmt.Errorf("gateway %q is not an IPv4 address", n.Gateway)
		}
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }
