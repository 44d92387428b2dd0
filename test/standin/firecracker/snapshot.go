package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// stateMagic starts the stand-in's vmstate (FC's own is a versioned binary format).
const stateMagic = "cocoon-fc-standin-vmstate\n"

func (v *vm) createSnapshot(_ http.ResponseWriter, r *http.Request) error {
	var p struct {
		State string `json:"snapshot_path"`
		Mem   string `json:"mem_file_path"`
		Type  string `json:"snapshot_type"`
	}
	if err := decode(r, &p); err != nil {
		return err
	}
	switch {
	case v.state != paused:
		return errors.New("cannot create a snapshot of a microVM that is not paused")
	case p.Type == "Diff":
		return errors.New("diff snapshots need dirty page tracking, which is not enabled")
	}
	data, err := json.Marshal(v.m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.State, append([]byte(stateMagic), data...), 0o600); err != nil {
		return fmt.Errorf("cannot save the microVM state: %w", err)
	}
	f, err := os.OpenFile(p.Mem, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot save the memory: %w", err)
	}
	defer f.Close()
	// Guest memory: a marker page, the rest sparse.
	if _, err := f.WriteString("cocoon-standin guest memory of " + v.o.id + "\n"); err != nil {
		return err
	}
	return f.Truncate(v.m.MemMiB << 20)
}

func (v *vm) loadSnapshot(_ http.ResponseWriter, r *http.Request) error {
	var p struct {
		State string `json:"snapshot_path"`
		Mem   *struct {
			Type string `json:"backend_type"`
			Path string `json:"backend_path"`
		} `json:"mem_backend"`
		MemFile  string    `json:"mem_file_path"`
		Resume   bool      `json:"resume_vm"`
		NICs     []nicConf `json:"network_overrides"`
		VsockNew *struct {
			UDS string `json:"uds_path"`
		} `json:"vsock_override"`
	}
	if err := decode(r, &p); err != nil {
		return err
	}
	if v.state != notStarted || v.configured {
		return errors.New("loading a microVM snapshot not allowed after configuring boot-specific resources")
	}
	memFile := p.MemFile
	switch {
	case p.Mem != nil && p.MemFile != "":
		return errors.New("only one of mem_backend and mem_file_path may be given")
	case p.Mem != nil && p.Mem.Type != "File":
		return errors.New("the stand-in loads File memory backends only")
	case p.Mem != nil:
		memFile = p.Mem.Path
	case memFile == "":
		return errors.New("missing memory backend")
	}
	raw, err := os.ReadFile(p.State)
	if err != nil {
		return fmt.Errorf("cannot open the snapshot file: %w", err)
	}
	if len(raw) < len(stateMagic) || string(raw[:len(stateMagic)]) != stateMagic {
		return errors.New("the snapshot file is not a microVM state")
	}
	var m machine
	if err := json.Unmarshal(raw[len(stateMagic):], &m); err != nil {
		return fmt.Errorf("cannot deserialize the microVM state: %w", err)
	}
	// The memory file is mapped privately by FC: opened read-only here to prove it is never written.
	mf, err := os.Open(memFile)
	if err != nil {
		return fmt.Errorf("cannot open the memory file: %w", err)
	}
	st, err := mf.Stat()
	if err == nil && st.Size() != m.MemMiB<<20 {
		err = fmt.Errorf("memory file is %d bytes, the state has %d MiB", st.Size(), m.MemMiB)
	}
	if err != nil {
		mf.Close()
		return err
	}
	v.open = append(v.open, mf)
	for _, o := range p.NICs {
		n, ok := m.NICs[o.ID]
		if !ok {
			return fmt.Errorf("invalid network override: no interface %s in the snapshot", o.ID)
		}
		n.Tap = o.Tap
		m.NICs[o.ID] = n
	}
	if p.VsockNew != nil {
		if m.Vsock == nil {
			return errors.New("vsock override given but the snapshot has no vsock device")
		}
		m.Vsock.UDS = p.VsockNew.UDS
	}
	v.m = m
	if err := v.activate(); err != nil {
		return err
	}
	v.state = paused
	if p.Resume {
		v.state = running
	}
	return nil
}
