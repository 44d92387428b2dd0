package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// vmm is the process's state: at most one VM, as in CH.
type vmm struct {
	mu      sync.Mutex
	cfg     *vmConfig // nil until booted or restored
	state   string    // Running, Paused, Shutdown
	nextID  map[string]int
	console *guestConsole
	vsock   *hybridVsock
	// powerOff is set when the power button was pressed on a paused guest: it acts on resume.
	powerOff bool
	exit     chan struct{}
	exitOnce sync.Once
}

func newVMM() *vmm { return &vmm{nextID: map[string]int{}, exit: make(chan struct{})} }

// boot starts the VM given on the command line.
func (v *vmm) boot(c *vmConfig) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextID["_disk"], v.nextID["_net"] = len(c.Disks), len(c.Net)
	con, err := openConsole(c)
	if err != nil {
		return err
	}
	if v.vsock, err = openVsock(c); err != nil {
		con.close()
		return err
	}
	v.cfg, v.state, v.console = c, "Running", con
	con.banner("booted")
	return nil
}

func (v *vmm) close() {
	if v.console != nil {
		v.console.close()
	}
	v.vsock.close()
}

// powerDown ends the process after the current answer went out, as a guest power-off ends CH.
func (v *vmm) powerDown() {
	v.exitOnce.Do(func() { time.AfterFunc(50*time.Millisecond, func() { close(v.exit) }) })
}

// errNoVM is CH's answer to VM calls before a VM exists.
var errNoVM = apiError{http.StatusNotFound, "VM is not created"}

type apiError struct {
	status int
	msg    string
}

func (e apiError) Error() string { return e.msg }

func fail(status int, format string, a ...any) error {
	return apiError{status, fmt.Sprintf(format, a...)}
}

// handler routes the API; apicheck has already checked method, path and body shape.
func (v *vmm) handler() http.Handler {
	routes := map[string]func(body []byte) (any, error){
		"/api/v1/vmm.ping":         func([]byte) (any, error) { return map[string]any{"version": "v" + defaultVersion}, nil },
		"/api/v1/vm.info":          func([]byte) (any, error) { return v.info() },
		"/api/v1/vm.pause":         func([]byte) (any, error) { return nil, v.transition("Running", "Paused") },
		"/api/v1/vm.resume":        func([]byte) (any, error) { return nil, v.resume() },
		"/api/v1/vm.shutdown":      func([]byte) (any, error) { return nil, v.shutdown() },
		"/api/v1/vm.power-button":  func([]byte) (any, error) { return nil, v.powerButton() },
		"/api/v1/vm.snapshot":      v.snapshot,
		"/api/v1/vm.restore":       v.restore,
		"/api/v1/vm.add-net":       v.addNet,
		"/api/v1/vm.add-disk":      v.addDisk,
		"/api/v1/vm.remove-device": v.removeDevice,
		"/api/v1/vm.resize":        v.resize,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, ok := routes[r.URL.Path]
		if !ok {
			http.Error(w, "the stand-in does not implement "+r.URL.Path, http.StatusNotImplemented)
			return
		}
		body, _ := io.ReadAll(r.Body)
		out, err := route(body)
		if err != nil {
			status := http.StatusInternalServerError
			if ae, ok := err.(apiError); ok {
				status = ae.status
			}
			http.Error(w, err.Error(), status)
			return
		}
		if out == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

func (v *vmm) info() (any, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return nil, errNoVM
	}
	return map[string]any{"config": v.cfg, "state": v.state,
		"memory_actual_size": v.cfg.Memory.Size + v.cfg.Memory.HotpluggedSize}, nil
}

func (v *vmm) transition(from, to string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return errNoVM
	}
	if v.state != from {
		return fail(http.StatusMethodNotAllowed, "VM is %s, not %s", v.state, from)
	}
	v.state = to
	return nil
}

func (v *vmm) resume() error {
	if err := v.transition("Paused", "Running"); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.console.banner("resumed")
	if v.powerOff {
		v.powerDown()
	}
	return nil
}

// shutdown is vm.shutdown: the VM stops, the VMM process stays (as in CH).
func (v *vmm) shutdown() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return errNoVM
	}
	v.state = "Shutdown"
	return nil
}

// powerButton is the ACPI power button: a running guest powers off, which ends CH.
func (v *vmm) powerButton() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.cfg == nil:
		return errNoVM
	case v.state == "Running":
		v.console.banner("power button: powering off")
		v.powerDown()
	case v.state == "Paused":
		v.powerOff = true
	default:
		return fail(http.StatusMethodNotAllowed, "VM is %s", v.state)
	}
	return nil
}

func (v *vmm) id(prefix string) string {
	n := v.nextID[prefix]
	v.nextID[prefix]++
	return fmt.Sprintf("%s%d", prefix, n)
}

func (v *vmm) addNet(body []byte) (any, error) {
	var n netConfig
	n.OffloadTso, n.OffloadUfo, n.OffloadCsum, n.NumQueues, n.QueueSize = true, true, true, 2, 256
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return nil, errNoVM
	}
	if n.Tap == "" {
		return nil, fail(http.StatusInternalServerError, "add-net: only tap= NICs can be added by this stand-in")
	}
	if err := n.open(); err != nil {
		return nil, fail(http.StatusInternalServerError, "%v", err)
	}
	if slices.ContainsFunc(v.cfg.Net, func(o netConfig) bool { return o.Mac == n.Mac && n.Mac != "" }) {
		return nil, fail(http.StatusInternalServerError, "a NIC with MAC %s exists", n.Mac)
	}
	n.ID = v.id("_net")
	v.cfg.Net = append(v.cfg.Net, n)
	return map[string]string{"id": n.ID, "bdf": fmt.Sprintf("0000:00:%02x.0", 8+len(v.cfg.Net)+len(v.cfg.Disks))}, nil
}

func (v *vmm) addDisk(body []byte) (any, error) {
	d := diskConfig{NumQueues: 1, QueueSize: 128, Sparse: true}
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return nil, errNoVM
	}
	if err := d.check(); err != nil {
		return nil, fail(http.StatusInternalServerError, "%v", err)
	}
	d.ID = v.id("_disk")
	v.cfg.Disks = append(v.cfg.Disks, d)
	return map[string]string{"id": d.ID, "bdf": fmt.Sprintf("0000:00:%02x.0", 8+len(v.cfg.Net)+len(v.cfg.Disks))}, nil
}

func (v *vmm) removeDevice(body []byte) (any, error) {
	var req struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return nil, errNoVM
	}
	before := len(v.cfg.Net) + len(v.cfg.Disks)
	v.cfg.Net = slices.DeleteFunc(v.cfg.Net, func(n netConfig) bool { return n.ID == req.ID })
	v.cfg.Disks = slices.DeleteFunc(v.cfg.Disks, func(d diskConfig) bool { return d.ID == req.ID })
	if len(v.cfg.Net)+len(v.cfg.Disks) == before {
		return nil, fail(http.StatusInternalServerError, "no device with id %q", req.ID)
	}
	return nil, nil
}

// resize is vm.resize: vCPUs up to max_vcpus; memory by ACPI hot-add into hotplug_size, in
// whole 128 MiB blocks.
func (v *vmm) resize(body []byte) (any, error) {
	var req struct {
		DesiredVcpus *int   `json:"desired_vcpus"`
		DesiredRAM   *int64 `json:"desired_ram"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return nil, errNoVM
	}
	c := &v.cfg.Cpus
	if n := req.DesiredVcpus; n != nil {
		if *n < 1 || *n > c.MaxVcpus {
			return nil, fail(http.StatusInternalServerError, "cannot resize to %d vCPUs: max_vcpus is %d", *n, c.MaxVcpus)
		}
		c.BootVcpus = *n
	}
	if r := req.DesiredRAM; r != nil {
		m := &v.cfg.Memory
		cur := m.Size + m.HotpluggedSize
		switch {
		case *r < cur:
			return nil, fail(http.StatusInternalServerError, "memory cannot shrink with ACPI hotplug (%d < %d)", *r, cur)
		case (*r-cur)%(128<<20) != 0:
			return nil, fail(http.StatusInternalServerError, "memory hot-add of %d bytes is not a multiple of 128 MiB", *r-cur)
		case *r > m.Size+m.HotplugSize:
			return nil, fail(http.StatusInternalServerError, "desired_ram %d is beyond size + hotplug_size (%d)", *r, m.Size+m.HotplugSize)
		}
		m.HotpluggedSize = *r - m.Size
	}
	return nil, nil
}
