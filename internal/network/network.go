// Package network gives VMs their NICs. CNI mode: a CNI attachment per NIC inside a per-VM
// network namespace, wired to a multi-queue TAP by tc redirects (no bridge in the data path).
// Bridge mode: TAPs enslaved to an existing Linux bridge. The engine persists the returned
// Attachments and hands the fds of OpenTaps to the hypervisor.
//
// Host-side work (CNI plugins, bridge ports, GC of bridge TAPs) happens in the network namespace
// of the calling OS thread; per-VM work runs on a locked thread inside the VM's namespace.
package network

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/cocoonstack/cocoon/internal/network/cni"
	"github.com/cocoonstack/cocoon/internal/network/tap"
)

// Attachment backends.
const (
	BackendCNI    = "cni"
	BackendBridge = "bridge"
)

const (
	// DefaultQueueSize is the virtio-net ring depth used when the request leaves it at 0.
	DefaultQueueSize = 512
	// MaxNICs bounds --nics; TAP names (tap<8>-<i>) must stay within the kernel's 15 bytes.
	MaxNICs = 64
)

// Attachment is one NIC of a VM as the engine stores it and the hypervisor consumes it.
type Attachment struct {
	Backend   string   `json:"backend"`           // BackendCNI | BackendBridge
	Network   string   `json:"network,omitempty"` // conflist name (CNI)
	BridgeDev string   `json:"bridge_dev,omitempty"`
	IfName    string   `json:"if_name"` // guest-side name: eth<i>
	Tap       string   `json:"tap"`
	MAC       string   `json:"mac"` // the guest NIC's MAC
	MTU       int      `json:"mtu"`
	NetnsPath string   `json:"netns_path,omitempty"` // CNI: where the TAP lives
	IP        string   `json:"ip,omitempty"`         // empty: the guest uses DHCP
	Prefix    int      `json:"prefix,omitempty"`
	Gateway   string   `json:"gateway,omitempty"`
	DNS       []string `json:"dns,omitempty"` // nameservers the CNI result named
	Queues    int      `json:"queues"`        // TAP queue pairs = fds OpenTaps returns
	QueueSize int      `json:"queue_size"`    // virtio-net ring depth per queue
}

// Request asks for the NICs of one VM.
type Request struct {
	VMID      string
	NICs      int    // 0: no network
	Queues    int    // TAP queue pairs per NIC: the vCPU count, or 1 for single-queue hypervisors
	QueueSize int    // 0: DefaultQueueSize
	Network   string // conflist name; "" is the first conflist by file name
	Bridge    string // bridge mode: an existing Linux bridge; excludes Network
	// Existing recovers a VM whose netns or TAPs are gone: the NICs are rebuilt on the same
	// backend and network, asking IPAM for the same IPs and keeping the MACs.
	Existing []Attachment
}

// Manager sets up and tears down VM NICs for one Cocoon root.
type Manager struct {
	rootDir         string
	confDir, binDir string
	cni             *libcni.CNIConfig
	records         *cni.Records
}

// NewManager returns a manager keeping its state under rootDir/cni, reading conflists from
// confDir and running plugins from binDir. Nothing is read until a method needs it.
func NewManager(rootDir, confDir, binDir string) *Manager {
	return &Manager{
		rootDir: rootDir,
		confDir: confDir,
		binDir:  binDir,
		cni:     libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(rootDir, "cni", "cache"), nil),
		records: cni.NewRecords(filepath.Join(rootDir, "cni", "db")),
	}
}

// Networks lists the conflist names of the conf dir; the first is the default.
func (m *Manager) Networks() ([]string, error) {
	c, err := cni.LoadCatalog(m.confDir)
	if err != nil {
		return nil, err
	}
	return c.Names(), nil
}

// plan is a validated Request.
type plan struct {
	vmID              string
	nics              int
	queues, queueSize int
	bridge            string                    // bridge mode when set
	list              *libcni.NetworkConfigList // CNI mode
	existing          []Attachment
}

// Validate runs the checks Setup runs before it creates anything. VMID may still be empty:
// callers validate before they mint the VM's ID.
func (m *Manager) Validate(req Request) error {
	_, err := m.plan(req)
	return err
}

func (m *Manager) plan(req Request) (*plan, error) {
	p := &plan{
		vmID:      req.VMID,
		nics:      max(req.NICs, len(req.Existing)),
		queues:    req.Queues,
		queueSize: cmp.Or(req.QueueSize, DefaultQueueSize),
		bridge:    req.Bridge,
		existing:  req.Existing,
	}
	switch {
	case req.NICs < 0 || p.nics > MaxNICs:
		return nil, fmt.Errorf("invalid NIC count %d: use --nics between 0 and %d", req.NICs, MaxNICs)
	case req.Network != "" && req.Bridge != "":
		return nil, errors.New("--network and --bridge are mutually exclusive: use one of them")
	case p.nics == 0:
		return p, nil
	case req.QueueSize < 0:
		return nil, fmt.Errorf("invalid queue size %d: use --queue-size 0 (default %d) or more", req.QueueSize, DefaultQueueSize)
	case req.Queues < 1 || req.Queues > tap.MaxQueues:
		return nil, fmt.Errorf("TAP queue count %d out of range 1-%d: pass the VM's vCPU count", req.Queues, tap.MaxQueues)
	}
	if req.VMID != "" {
		if err := checkVMID(req.VMID); err != nil {
			return nil, err
		}
	}
	network, err := recoveredNetwork(req, p)
	if err != nil {
		return nil, err
	}
	if p.bridge != "" {
		if _, err := bridgeLink(p.bridge); err != nil {
			return nil, err
		}
		return p, nil
	}
	cat, err := cni.LoadCatalog(m.confDir)
	if err != nil {
		return nil, err
	}
	if p.list, err = cat.Get(network); err != nil {
		return nil, err
	}
	if err := cni.CheckPlugins(p.list, m.binDir); err != nil {
		return nil, err
	}
	return p, nil
}

// recoveredNetwork takes the backend and network of Existing NICs (setting p.bridge for bridge
// mode) and returns the conflist name to use.
func recoveredNetwork(req Request, p *plan) (string, error) {
	if len(req.Existing) == 0 {
		return req.Network, nil
	}
	prev := req.Existing[0]
	switch prev.Backend {
	case BackendBridge:
		if req.Network != "" || (req.Bridge != "" && req.Bridge != prev.BridgeDev) {
			return "", fmt.Errorf("recover network of VM %s: it is on bridge %q: drop --network/--bridge", req.VMID, prev.BridgeDev)
		}
		p.bridge = prev.BridgeDev
		return "", nil
	case BackendCNI:
		if req.Bridge != "" || (req.Network != "" && req.Network != prev.Network) {
			return "", fmt.Errorf("recover network of VM %s: it is on CNI network %q: drop --network/--bridge", req.VMID, prev.Network)
		}
		return prev.Network, nil
	}
	return "", fmt.Errorf("recover network of VM %s: unknown backend %q in its record", req.VMID, prev.Backend)
}

// vmIDPattern admits what is valid as a CNI container ID and a netns file name.
var vmIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{7,}$`)

func checkVMID(id string) error {
	if !vmIDPattern.MatchString(id) {
		return fmt.Errorf("invalid VM ID %q for networking: need 8+ characters of [A-Za-z0-9_.-]", id)
	}
	return nil
}

// Setup creates the NICs of req and returns them for the engine to persist. Whatever it made is
// torn down again when it fails. With Existing it first releases what is left of the old NICs.
func (m *Manager) Setup(ctx context.Context, req Request) ([]Attachment, error) {
	p, err := m.plan(req)
	if err != nil || p.nics == 0 {
		return nil, err
	}
	if err := checkVMID(req.VMID); err != nil {
		return nil, err
	}
	if p.bridge != "" {
		owner, err := m.tapOwner(req.VMID)
		if err != nil {
			return nil, err
		}
		return setupBridge(p, owner)
	}
	return m.setupCNI(ctx, p)
}

// Teardown releases every NIC of vmID: CNI DEL per NIC (freeing IPAM leases), the netns with
// its TAPs and tc rules, bridge-mode TAPs and the CNI records. It is idempotent and keeps going
// past errors; atts may be empty, the records of this root are enough.
func (m *Manager) Teardown(ctx context.Context, vmID string, atts []Attachment) error {
	if err := checkVMID(vmID); err != nil {
		return err
	}
	owner, err := m.tapOwner(vmID)
	if err != nil {
		return err
	}
	return errors.Join(m.teardownCNI(ctx, vmID, atts), deleteBridgeTaps(vmID, owner))
}

// Verify reports the first NIC of atts whose netns, veth or TAP is missing, as after a host
// reboot; the engine then calls Setup with Existing.
func (m *Manager) Verify(vmID string, atts []Attachment) error {
	for _, a := range atts {
		var err error
		switch a.Backend {
		case BackendCNI:
			err = ns.WithNetNSPath(a.NetnsPath, func(ns.NetNS) error { return checkCNINIC(a) })
		case BackendBridge:
			err = checkBridgeNIC(a)
		default:
			err = fmt.Errorf("unknown backend %q", a.Backend)
		}
		if err != nil {
			return fmt.Errorf("network of VM %s, NIC %s: %w", vmID, a.IfName, err)
		}
	}
	return nil
}

// OpenTaps opens att.Queues queues of the NIC's TAP for the hypervisor. The caller owns the
// files; they work from any network namespace.
func (m *Manager) OpenTaps(att Attachment) ([]*os.File, error) {
	switch att.Backend {
	case BackendCNI:
		var files []*os.File
		err := ns.WithNetNSPath(att.NetnsPath, func(ns.NetNS) error {
			var err error
			files, err = tap.Open(att.Tap, att.Queues)
			return err
		})
		return files, err
	case BackendBridge:
		return tap.Open(att.Tap, att.Queues)
	}
	return nil, fmt.Errorf("open TAP %s: unknown backend %q", att.Tap, att.Backend)
}
