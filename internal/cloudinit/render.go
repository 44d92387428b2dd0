// Package cloudinit builds the NoCloud seed of cloud-image VMs: meta-data, user-data and
// network-config, packed into a small FAT12 volume labelled CIDATA.
package cloudinit

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	"go.yaml.in/yaml/v3"
)

// NIC is one guest network interface, matched by MAC. An empty IP means DHCP on that NIC.
type NIC struct {
	MAC     string
	IP      string
	Prefix  int
	Gateway string
}

// Mount asks the guest to mount the data disk with virtio serial Serial at MountPoint.
type Mount struct {
	Serial     string
	MountPoint string
	FSType     string
	ReadOnly   bool
}

// Unit is a systemd service written to /etc/systemd/system and enabled and started on first
// boot.
type Unit struct {
	Name    string // e.g. cocoon-agent.service
	Content string
}

// Seed is everything the guest's first boot is told. An empty User means root; an empty Password
// sets no password (and creates no extra user).
type Seed struct {
	InstanceID string
	Hostname   string
	User       string
	Password   string
	NICs       []NIC
	DNS        []string
	Mounts     []Mount
	Units      []Unit
}

// Render produces the three NoCloud documents. Every value goes through a YAML encoder (which
// also quotes YAML 1.1 booleans and sexagesimals, as cloud-init parses with PyYAML) and nothing is
// ever put in a shell command, so passwords with quotes or spaces cannot break out.
func Render(s Seed) (metaData, userData, networkConfig []byte, err error) {
	if err := s.validate(); err != nil {
		return nil, nil, nil, err
	}
	if metaData, err = encode("", metaDoc{InstanceID: s.InstanceID, LocalHostname: s.Hostname}); err != nil {
		return nil, nil, nil, err
	}
	if userData, err = encode("#cloud-config\n", s.cloudConfig()); err != nil {
		return nil, nil, nil, err
	}
	if networkConfig, err = encode("", s.netplan()); err != nil {
		return nil, nil, nil, err
	}
	return metaData, userData, networkConfig, nil
}

type metaDoc struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname"`
}

type cloudConfig struct {
	Hostname    string      `yaml:"hostname"`
	Users       []userEntry `yaml:"users,omitempty"`
	Chpasswd    *chpasswd   `yaml:"chpasswd,omitempty"`
	SSHPwauth   bool        `yaml:"ssh_pwauth,omitempty"`
	DisableRoot *bool       `yaml:"disable_root,omitempty"`
	Mounts      []flowRow   `yaml:"mounts,omitempty"`
	WriteFiles  []writeFile `yaml:"write_files,omitempty"`
	RunCmd      [][]string  `yaml:"runcmd,omitempty"` // argv lists: no shell
}

type userEntry struct {
	Name       string `yaml:"name"`
	Shell      string `yaml:"shell"`
	Groups     string `yaml:"groups"`
	Sudo       string `yaml:"sudo"`
	LockPasswd bool   `yaml:"lock_passwd"`
}

// chpasswd uses the "user:password" list form: understood by every cloud-init release in current
// cloud images (the newer users: form needs 22.3+); cloud-init feeds it to chpasswd on stdin.
type chpasswd struct {
	Expire bool     `yaml:"expire"`
	List   []string `yaml:"list"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
	Content     string `yaml:"content"`
}

func (s Seed) cloudConfig() cloudConfig {
	user := s.User
	if user == "" {
		user = "root"
	}
	cc := cloudConfig{Hostname: s.Hostname}
	if user == "root" {
		keep := false
		cc.DisableRoot = &keep
	}
	if s.Password != "" {
		// A non-root user is created by cloud-init's users module (init stage, before chpasswd),
		// not by shell runcmd lines: no quoting to get wrong, and the user exists earlier.
		if user != "root" {
			cc.Users = []userEntry{{Name: user, Shell: "/bin/bash", Groups: "sudo", Sudo: "ALL=(ALL) NOPASSWD:ALL"}}
		}
		cc.Chpasswd = &chpasswd{List: []string{user + ":" + s.Password}}
		cc.SSHPwauth = true
	}
	for _, m := range s.Mounts {
		opts, pass := "defaults,nofail", "2"
		if m.ReadOnly {
			opts, pass = "ro,nofail", "0"
		}
		cc.Mounts = append(cc.Mounts, flowRow{"/dev/disk/by-id/virtio-" + m.Serial, m.MountPoint, m.FSType, opts, "0", pass})
	}
	for _, u := range s.Units {
		cc.WriteFiles = append(cc.WriteFiles, writeFile{Path: "/etc/systemd/system/" + u.Name, Owner: "root:root", Permissions: "0644", Content: u.Content})
		cc.RunCmd = append(cc.RunCmd, []string{"systemctl", "enable", "--now", "--no-block", u.Name})
	}
	for i, nic := range s.NICs {
		cc.WriteFiles = append(cc.WriteFiles, writeFile{
			Path:        fmt.Sprintf("/etc/systemd/network/15-cocoon-id%d.network", i),
			Owner:       "root:root",
			Permissions: "0644",
			Content:     networkdUnit(nic, i == 0, s.DNS),
		})
	}
	return cc
}

// networkdUnit is the fallback for guests where netplan's match cannot apply: matched on the
// current MAC. Only the first NIC gates network-online. RequiredForOnline belongs in [Link]
// (the original put it under [Network], where systemd ignores it).
func networkdUnit(nic NIC, first bool, dns []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Match]\nMACAddress=%s\n\n[Link]\nRequiredForOnline=%s\n\n[Network]\n", mac(nic.MAC), yesNo(first))
	if nic.IP == "" {
		b.WriteString("DHCP=ipv4\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Address=%s/%d\n", nic.IP, nic.Prefix)
	if nic.Gateway != "" {
		fmt.Fprintf(&b, "Gateway=%s\n", nic.Gateway)
	}
	for _, d := range dns {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	return b.String()
}

type netplanDoc struct {
	Version   int        `yaml:"version"`
	Ethernets orderedMap `yaml:"ethernets,omitempty"`
}

type ethernet struct {
	Match       netplanMatch `yaml:"match"`
	DHCP4       bool         `yaml:"dhcp4,omitempty"`
	Addresses   []string     `yaml:"addresses,omitempty"`
	Routes      []route      `yaml:"routes,omitempty"`
	Nameservers *nameservers `yaml:"nameservers,omitempty"`
}

type netplanMatch struct {
	MACAddress quoted `yaml:"macaddress"`
}

type route struct {
	To  string `yaml:"to"`
	Via string `yaml:"via"`
}

type nameservers struct {
	Addresses []string `yaml:"addresses"`
}

// netplan renders netplan v2. With no NICs it is a bare "version: 2", so cloud-init applies an
// empty configuration instead of generating its DHCP fallback.
func (s Seed) netplan() netplanDoc {
	doc := netplanDoc{Version: 2}
	for i, nic := range s.NICs {
		eth := ethernet{Match: netplanMatch{MACAddress: quoted(mac(nic.MAC))}}
		if nic.IP == "" {
			eth.DHCP4 = true
		} else {
			eth.Addresses = []string{fmt.Sprintf("%s/%d", nic.IP, nic.Prefix)}
			if nic.Gateway != "" {
				// "0.0.0.0/0", not netplan's "default": cloud-init before 23.x (Debian 12 has
				// 22.4) rejects "default" and then applies no network config at all.
				eth.Routes = []route{{To: "0.0.0.0/0", Via: nic.Gateway}}
			}
			if len(s.DNS) > 0 {
				eth.Nameservers = &nameservers{Addresses: s.DNS}
			}
		}
		doc.Ethernets = append(doc.Ethernets, keyValue{fmt.Sprintf("id%d", i), eth})
	}
	return doc
}

// mac normalises a validated MAC to lower-case colon form.
func mac(s string) string {
	hw, _ := net.ParseMAC(s)
	return hw.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func encode(header string, v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("render cloud-init YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render cloud-init YAML: %w", err)
	}
	return b.Bytes(), nil
}

// quoted is a string always written in double quotes (MACs, as netplan's examples and the original).
type quoted string

func (q quoted) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Style: yaml.DoubleQuotedStyle, Value: string(q)}, nil
}

// flowRow is a sequence written on one line, like cloud-init's documented mounts: rows.
type flowRow []string

func (r flowRow) MarshalYAML() (any, error) {
	var n yaml.Node
	if err := n.Encode([]string(r)); err != nil {
		return nil, err
	}
	n.Style = yaml.FlowStyle
	return &n, nil
}

type keyValue struct {
	key   string
	value any
}

// orderedMap keeps insertion order (id0, id1, …, id10), which a Go map would not.
type orderedMap []keyValue

func (m orderedMap) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, kv := range m {
		var k, v yaml.Node
		k.SetString(kv.key)
		if err := v.Encode(kv.value); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &k, &v)
	}
	return n, nil
}
