package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
)

// Instance states, as GET / reports them.
const (
	notStarted = "Not started"
	running    = "Running"
	paused     = "Paused"
)

type driveConf struct {
	ID       string `json:"drive_id"`
	Path     string `json:"path_on_host"`
	ReadOnly bool   `json:"is_read_only"`
}

type nicConf struct {
	ID  string `json:"iface_id"`
	Tap string `json:"host_dev_name"`
	MAC string `json:"guest_mac,omitempty"`
}

type vsockConf struct {
	CID int    `json:"guest_cid"`
	UDS string `json:"uds_path"`
}

// machine is the microVM's configuration: what PUTs set before boot and what a snapshot holds.
type machine struct {
	VCPUs   int                  `json:"vcpus"`
	MemMiB  int64                `json:"mem_mib"`
	Kernel  string               `json:"kernel,omitempty"`
	Drives  map[string]driveConf `json:"drives"`
	NICs    map[string]nicConf   `json:"nics"`
	Vsock   *vsockConf           `json:"vsock,omitempty"`
	Balloon bool                 `json:"balloon"`
	Entropy bool                 `json:"entropy"`
}

type vm struct {
	o          options
	mu         sync.Mutex
	state      string
	configured bool // a pre-boot resource was set: snapshot load is no longer allowed
	m          machine
	vsockLn    net.Listener
	open       []*os.File          // drive and memory files held open, as FC holds them
	taps       map[string]*os.File // attached TAP queues by interface id
	exit       chan int
}

func newVM(o options) *vm {
	return &vm{o: o, state: notStarted, exit: make(chan int, 1), taps: map[string]*os.File{},
		m: machine{VCPUs: 1, MemMiB: 128, Drives: map[string]driveConf{}, NICs: map[string]nicConf{}}}
}

// fcError answers like Firecracker: 400 with {"fault_message": ...}.
func fcError(w http.ResponseWriter, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"fault_message": fmt.Sprintf(format, args...)})
}

func decode(r *http.Request, v any) error {
	return json.NewDecoder(r.Body).Decode(v)
}

// handler routes the API; apicheck has validated every request against the definition.
func (v *vm) handler() http.Handler {
	mux := http.NewServeMux()
	pre := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v.mu.Lock()
			defer v.mu.Unlock()
			if v.state != notStarted {
				fcError(w, "The requested operation is not supported after starting the microVM.")
				return
			}
			if err := fn(w, r); err != nil {
				fcError(w, "%v", err)
				return
			}
			v.configured = true
			w.WriteHeader(http.StatusNoContent)
		})
	}
	post := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v.mu.Lock()
			defer v.mu.Unlock()
			if err := fn(w, r); err != nil {
				fcError(w, "%v", err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
	pre("PUT /machine-config", v.putMachineConfig)
	pre("PUT /boot-source", v.putBootSource)
	pre("PUT /drives/{id}", v.putDrive)
	pre("PUT /network-interfaces/{id}", v.putNIC)
	pre("PUT /balloon", func(w http.ResponseWriter, r *http.Request) error { v.m.Balloon = true; return nil })
	pre("PUT /entropy", func(w http.ResponseWriter, r *http.Request) error { v.m.Entropy = true; return nil })
	pre("PUT /vsock", v.putVsock)
	post("PUT /actions", v.putAction)
	post("PATCH /vm", v.patchVM)
	post("PATCH /drives/{id}", v.patchDrive)
	post("PUT /snapshot/create", v.createSnapshot)
	post("PUT /snapshot/load", v.loadSnapshot)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		defer v.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"app_name": "Firecracker", "id": v.o.id, "state": v.state, "vmm_version": version})
	})
	mux.HandleFunc("GET /vm/config", v.getConfig)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fcError(w, "the stand-in does not implement %s %s", r.Method, r.URL.Path)
	})
	return mux
}

func (v *vm) putMachineConfig(_ http.ResponseWriter, r *http.Request) error {
	var mc struct {
		VCPUs  int   `json:"vcpu_count"`
		MemMiB int64 `json:"mem_size_mib"`
	}
	if err := decode(r, &mc); err != nil {
		return err
	}
	if mc.VCPUs != 1 && mc.VCPUs%2 != 0 {
		return errors.New("the vCPU number is invalid! The vCPU number can only be 1 or an even number when SMT is enabled")
	}
	if mc.MemMiB < 1 {
		return errors.New("the memory size (MiB) is invalid")
	}
	v.m.VCPUs, v.m.MemMiB = mc.VCPUs, mc.MemMiB
	return nil
}

func (v *vm) putBootSource(_ http.ResponseWriter, r *http.Request) error {
	var bs struct {
		Kernel string `json:"kernel_image_path"`
		Initrd string `json:"initrd_path"`
	}
	if err := decode(r, &bs); err != nil {
		return err
	}
	head := make([]byte, 4)
	f, err := os.Open(bs.Kernel)
	if err != nil {
		return fmt.Errorf("the kernel file cannot be opened: %w", err)
	}
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || string(head) != "\x7fELF" {
		return errors.New("the kernel image is not an ELF file")
	}
	if bs.Initrd != "" {
		if _, err := os.Stat(bs.Initrd); err != nil {
			return fmt.Errorf("the initrd file cannot be opened: %w", err)
		}
	}
	v.m.Kernel = bs.Kernel
	return nil
}

func (v *vm) putDrive(_ http.ResponseWriter, r *http.Request) error {
	var d driveConf
	if err := decode(r, &d); err != nil {
		return err
	}
	if d.ID != r.PathValue("id") {
		return errors.New("the id from the path does not match the id from the body")
	}
	if err := checkDiskPath(d.Path, d.ReadOnly); err != nil {
		return err
	}
	v.m.Drives[d.ID] = d
	return nil
}

// checkDiskPath opens a drive as FC does: read-write unless read-only.
func checkDiskPath(path string, ro bool) error {
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return fmt.Errorf("unable to create the virtio block device: cannot open disk %s: %w", path, err)
	}
	return f.Close()
}

func (v *vm) putNIC(_ http.ResponseWriter, r *http.Request) error {
	var n nicConf
	if err := decode(r, &n); err != nil {
		return err
	}
	if n.ID != r.PathValue("id") {
		return errors.New("the id from the path does not match the id from the body")
	}
	// FC opens the TAP when the interface is configured.
	f, err := openTap(n.Tap)
	if err != nil {
		return fmt.Errorf("could not create the network device: %w", err)
	}
	if old := v.taps[n.ID]; old != nil {
		old.Close()
	}
	v.taps[n.ID] = f
	v.m.NICs[n.ID] = n
	return nil
}

func (v *vm) putVsock(_ http.ResponseWriter, r *http.Request) error {
	var c vsockConf
	if err := decode(r, &c); err != nil {
		return err
	}
	v.m.Vsock = &c
	return nil
}

func (v *vm) putAction(_ http.ResponseWriter, r *http.Request) error {
	var a struct {
		Type string `json:"action_type"`
	}
	if err := decode(r, &a); err != nil {
		return err
	}
	switch a.Type {
	case "InstanceStart":
		if v.state != notStarted {
			return errors.New("the microVM is already running")
		}
		if v.m.Kernel == "" {
			return errors.New("cannot start microvm without kernel configuration")
		}
		if err := v.activate(); err != nil {
			return err
		}
		v.state = running
		v.console(fmt.Sprintf("cocoon-standin: %s booted (%d vCPUs, %d MiB, %d drives, %d NICs)", v.o.id, v.m.VCPUs, v.m.MemMiB, len(v.m.Drives), len(v.m.NICs)))
	case "SendCtrlAltDel":
		if v.state != running {
			return errors.New("the microVM is not running")
		}
		v.console("cocoon-standin: reboot: Restarting system")
		v.exit <- 0
	case "FlushMetrics":
		return errors.New("metrics are not configured")
	}
	return nil
}

// activate opens the devices as FC does at boot or load: drives, TAPs, the vsock socket.
func (v *vm) activate() error {
	for _, id := range sortedKeys(v.m.Drives) {
		d := v.m.Drives[id]
		flag := os.O_RDWR
		if d.ReadOnly {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(d.Path, flag, 0)
		if err != nil {
			return fmt.Errorf("cannot open disk %s of drive %s: %w", d.Path, id, err)
		}
		v.open = append(v.open, f)
	}
	for id, n := range v.m.NICs {
		if v.taps[id] != nil {
			continue // opened when configured
		}
		f, err := openTap(n.Tap)
		if err != nil {
			return fmt.Errorf("could not create the network device: %w", err)
		}
		v.taps[id] = f
	}
	if v.m.Vsock != nil {
		ln, err := net.Listen("unix", v.m.Vsock.UDS)
		if err != nil {
			return fmt.Errorf("cannot create the vsock device: %w", err)
		}
		v.vsockLn = ln
		go serveVsock(ln)
	}
	return nil
}

// serveVsock plays FC's hybrid vsock with no agent in the guest: a CONNECT is read and the
// connection closed, FC's answer when nothing listens on the guest port.
func serveVsock(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = bufio.NewReader(c).ReadString('\n')
		}()
	}
}

func (v *vm) patchVM(_ http.ResponseWriter, r *http.Request) error {
	var s struct {
		State string `json:"state"`
	}
	if err := decode(r, &s); err != nil {
		return err
	}
	if v.state == notStarted {
		return errors.New("the microVM is not running")
	}
	switch s.State {
	case "Paused":
		v.state = paused
	case "Resumed":
		if v.state == paused {
			v.console("cocoon-standin: " + v.o.id + " resumed")
		}
		v.state = running
	}
	return nil
}

func (v *vm) patchDrive(_ http.ResponseWriter, r *http.Request) error {
	var d struct {
		ID   string `json:"drive_id"`
		Path string `json:"path_on_host"`
	}
	if err := decode(r, &d); err != nil {
		return err
	}
	if v.state == notStarted {
		return errors.New("the requested operation is not supported before starting the microVM")
	}
	cur, ok := v.m.Drives[d.ID]
	if !ok || d.ID != r.PathValue("id") {
		return fmt.Errorf("invalid block device ID %q", r.PathValue("id"))
	}
	if d.Path != "" {
		if err := checkDiskPath(d.Path, cur.ReadOnly); err != nil {
			return err
		}
		cur.Path = d.Path
		v.m.Drives[d.ID] = cur
	}
	return nil
}

// console writes a line to the guest's serial console (our stdout, the PTY).
func (v *vm) console(line string) {
	fmt.Fprint(os.Stdout, strings.ReplaceAll(line, "\n", "\r\n")+"\r\n")
}

// echo copies console input back while the guest runs, as a shell on the console would.
func (v *vm) echo() {
	buf := make([]byte, 4096)
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			v.mu.Lock()
			up := v.state == running
			v.mu.Unlock()
			if up {
				_, _ = os.Stdout.Write(buf[:n])
			}
		}
		if err != nil {
			return
		}
	}
}

// getConfig answers GET /vm/config (FullVmConfiguration) from the devices as they are now,
// boot-source left out after a snapshot load, as FC does.
func (v *vm) getConfig(w http.ResponseWriter, _ *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	type drive struct {
		ID       string `json:"drive_id"`
		Path     string `json:"path_on_host"`
		Root     bool   `json:"is_root_device"`
		ReadOnly bool   `json:"is_read_only"`
	}
	cfg := map[string]any{"machine-config": map[string]any{"vcpu_count": v.m.VCPUs, "mem_size_mib": v.m.MemMiB}}
	var drives []drive
	for _, id := range sortedKeys(v.m.Drives) {
		d := v.m.Drives[id]
		drives = append(drives, drive{ID: d.ID, Path: d.Path, ReadOnly: d.ReadOnly})
	}
	var nics []nicConf
	for _, id := range sortedKeys(v.m.NICs) {
		nics = append(nics, v.m.NICs[id])
	}
	cfg["drives"], cfg["network-interfaces"] = drives, nics
	if v.m.Vsock != nil {
		cfg["vsock"] = v.m.Vsock
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(cfg)
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
