// Package snapshot keeps snapshot records and their on-disk layout: one directory per snapshot
// under <root>/snapshot/data/<id>/ holding a hypervisor-neutral manifest and the payload files
// (device state, guest memory, writable disks), all named relative to that directory so a
// snapshot can move between hosts.
package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/cocoonstack/cocoon/internal/snapshot/archive"
	"github.com/cocoonstack/cocoon/internal/store"
)

// ManifestName is the manifest's file name inside a snapshot directory.
const ManifestName = "manifest.json"

// Payload file names and roles. The hypervisor's state files have the names its backend
// declares (DeclareStateFiles).
const (
	FileCOW      = "cow.raw"       // OCI writable layer disk
	FileOverlay  = "overlay.qcow2" // cloud image overlay (backing file rebased on clone)
	FileCidata   = "cidata.img"
	FileFirmware = "OVMF_VARS.fd"
	FileAgent    = "agent.erofs" // guest agent layer (OCI images)
)

// allowedFiles are the only names a snapshot directory (and an imported archive) may hold.
var allowedFiles = map[string]bool{ManifestName: true, FileCOW: true,
	FileOverlay: true, FileCidata: true, FileFirmware: true, FileAgent: true}

// dataFileRE names data disk payloads: data-<name>.raw, name by the data disk name rule.
var dataFileRE = regexp.MustCompile(`^data-[a-z][a-z0-9_-]{0,19}\.raw$`)

// Allowed reports whether name may appear in a snapshot directory of some hypervisor.
func Allowed(name string) bool {
	return allowedFiles[name] || dataFileRE.MatchString(name) || anyStateFile(name)
}

// allowedFor reports whether name may appear in a snapshot directory of hypervisor hv.
func allowedFor(hv, name string) bool {
	return allowedFiles[name] || dataFileRE.MatchString(name) || isStateFile(hv, name)
}

// stateFiles maps a hypervisor name to the matcher of the state file names its backend writes.
var (
	stateMu    sync.RWMutex
	stateFiles = map[string]func(string) bool{}
)

// DeclareStateFiles records which names hypervisor hv's backend writes into a snapshot
// directory (hypervisor.Snapshotter.StateFile). The engine declares every backend it has;
// names no backend declares are refused.
func DeclareStateFiles(hv string, match func(name string) bool) {
	stateMu.Lock()
	defer stateMu.Unlock()
	stateFiles[hv] = match
}

func isStateFile(hv, name string) bool {
	stateMu.RLock()
	defer stateMu.RUnlock()
	match, ok := stateFiles[hv]
	return ok && !allowedFiles[name] && match(name)
}

func anyStateFile(name string) bool {
	stateMu.RLock()
	defer stateMu.RUnlock()
	for _, match := range stateFiles {
		if !allowedFiles[name] && match(name) {
			return true
		}
	}
	return false
}

// Disk is one disk of the snapshotted VM, in attach order. Layers and cloud bases are referenced
// by blob ID (content address), never by host path.
type Disk struct {
	Role     string `json:"role"` // layer | cow | cidata | data | agent
	Serial   string `json:"serial,omitempty"`
	Format   string `json:"format"`
	ReadOnly bool   `json:"read_only,omitempty"`
	DirectIO bool   `json:"direct_io,omitempty"`
	File     string `json:"file,omitempty"`  // payload file, for cow, cidata and data
	Layer    string `json:"layer,omitempty"` // layer digest, for layer disks
	// Data disks: filesystem made at creation and cloud-init mount point.
	FSType     string `json:"fstype,omitempty"`
	MountPoint string `json:"mount_point,omitempty"`
}

// File is one payload file with its apparent size and content digest (archive.FileDigest),
// both checked on import.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Digest string `json:"digest,omitempty"`
}

// Manifest describes a snapshot completely; it is the first member of an export archive.
type Manifest struct {
	Version int `json:"version"`
	// Name and Description travel with an export, so an import keeps them by default.
	Name          string            `json:"name,omitempty"`
	Description   string            `json:"description,omitempty"`
	Hypervisor    string            `json:"hypervisor"`
	CPU           int               `json:"cpu"`
	MaxCPU        int               `json:"max_cpu"`
	Memory        int64             `json:"memory"`
	Storage       int64             `json:"storage"`
	NICs          int               `json:"nics"`
	MACs          []string          `json:"macs,omitempty"`
	QueueSize     int               `json:"queue_size,omitempty"`
	DiskQueueSize int               `json:"disk_queue_size,omitempty"`
	Network       string            `json:"network,omitempty"`
	Image         string            `json:"image"`
	ImageDigest   string            `json:"image_digest,omitempty"`
	ImageKind     string            `json:"image_type"`
	Platform      string            `json:"platform,omitempty"` // linux/ARCH of the VM; "" = taken before platforms were recorded
	ImageBlobIDs  []string          `json:"image_blob_ids,omitempty"`
	NoDirectIO    bool              `json:"no_direct_io,omitempty"`
	Windows       bool              `json:"windows,omitempty"`
	Accel         string            `json:"accel,omitempty"`
	Cmdline       string            `json:"cmdline,omitempty"`
	Disks         []Disk            `json:"disks"`
	Files         []File            `json:"files"`
	Extra         map[string]string `json:"extra,omitempty"`
}

// ManifestVersion is the manifest format this build writes and imports (2: files carry
// digests). Snapshots of version 1 already in the index stay clonable.
const ManifestVersion = 2

// Snapshot is one record of the index.
type Snapshot struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	SourceVM    string    `json:"source_vm,omitempty"` // empty for imported snapshots
	Pending     bool      `json:"pending,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	Manifest    Manifest  `json:"manifest"`
	// Standby is the snapshot's standby pool: clones kept ready, guest paused, for `vm clone`
	// to take over. It is this host's, never exported.
	Standby *StandbyPool `json:"standby,omitempty"`
}

// StandbyPool is how many standby clones a snapshot keeps, and the clone options they are
// made with (zero values inherit from the snapshot, as for vm clone). A clone whose options
// resolve to the same VM configuration takes one.
type StandbyPool struct {
	Count      int    `json:"count"`
	CPU        int    `json:"cpu,omitempty"`
	Memory     int64  `json:"memory,omitempty"`
	Storage    int64  `json:"storage,omitempty"`
	NICs       int    `json:"nics,omitempty"`
	Network    string `json:"network,omitempty"`
	Bridge     string `json:"bridge,omitempty"`
	NoDirectIO bool   `json:"no_direct_io,omitempty"`
}

type index struct {
	store.Header
	Snapshots map[string]*Snapshot `json:"snapshots"`
	Names     map[string]string    `json:"names"`
}

func (x *index) Init() {
	if x.Snapshots == nil {
		x.Snapshots = map[string]*Snapshot{}
	}
	if x.Names == nil {
		x.Names = map[string]string{}
	}
}

// ErrNotFound is returned for unknown snapshot refs.
var ErrNotFound = errors.New("snapshot not found")

// Store is the snapshot index plus the data directories.
type Store struct {
	root string // <root>/snapshot
	idx  *store.Store[index, *index]
}

// NewStore returns the snapshot store under rootDir.
func NewStore(rootDir string) *Store {
	root := filepath.Join(rootDir, "snapshot")
	return &Store{root: root, idx: store.New[index](filepath.Join(root, "db"), "snapshots", 1)}
}

// Dir is the data directory of snapshot id.
func (s *Store) Dir(id string) string { return filepath.Join(s.root, "data", id) }

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// Reserve inserts a pending record (name checked for uniqueness) so crashes stay visible to GC.
func (s *Store) Reserve(ctx context.Context, snap *Snapshot) error {
	if !nameRE.MatchString(snap.Name) {
		return fmt.Errorf("snapshot name %q is invalid: use 1-63 letters, digits, '.', '_' or '-'", snap.Name)
	}
	if store.LooksLikeID(snap.Name) {
		return fmt.Errorf("snapshot name %q looks like a snapshot ID (26 letters and digits 2-7): pick a name refs cannot mistake for an ID", snap.Name)
	}
	snap.Pending = true
	return s.idx.Update(ctx, func(x *index) error {
		if other, ok := x.Names[snap.Name]; ok {
			return fmt.Errorf("snapshot name %q already exists (id %s): choose another --name", snap.Name, other)
		}
		if id := store.ShadowedID(snap.Name, x.Snapshots); id != "" {
			return fmt.Errorf("snapshot name %q equals or begins the ID of snapshot %s: choose another --name", snap.Name, id)
		}
		x.Snapshots[snap.ID] = snap
		x.Names[snap.Name] = snap.ID
		return nil
	})
}

// Commit moves the staging dir into place and makes the record visible.
func (s *Store) Commit(ctx context.Context, snap *Snapshot, staging string) error {
	if err := os.MkdirAll(filepath.Join(s.root, "data"), 0o750); err != nil {
		return err
	}
	if err := os.Rename(staging, s.Dir(snap.ID)); err != nil {
		return fmt.Errorf("commit snapshot %s: %w", snap.Name, err)
	}
	snap.Pending = false
	return s.idx.Update(ctx, func(x *index) error {
		if _, ok := x.Snapshots[snap.ID]; !ok { // removed while pending: do not bring it back
			return fmt.Errorf("commit snapshot %s: it was removed while being written", snap.Name)
		}
		x.Snapshots[snap.ID] = snap
		return nil
	})
}

// Drop removes a record and its data dir (used for rollback and rm).
func (s *Store) Drop(ctx context.Context, id string) error {
	if err := os.RemoveAll(s.Dir(id)); err != nil {
		return fmt.Errorf("remove snapshot data %s: %w", id, err)
	}
	return s.idx.Update(ctx, func(x *index) error {
		if snap, ok := x.Snapshots[id]; ok {
			if x.Names[snap.Name] == id {
				delete(x.Names, snap.Name)
			}
			delete(x.Snapshots, id)
		}
		return nil
	})
}

// SetStandby records the snapshot's standby pool (nil: none).
func (s *Store) SetStandby(ctx context.Context, id string, pool *StandbyPool) error {
	return s.idx.Update(ctx, func(x *index) error {
		snap, ok := x.Snapshots[id]
		if !ok {
			return fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
		}
		snap.Standby = pool
		return nil
	})
}

// List returns committed snapshots, oldest first.
func (s *Store) List(ctx context.Context) ([]Snapshot, error) { return s.list(ctx, false) }

func (s *Store) list(ctx context.Context, pending bool) ([]Snapshot, error) {
	var out []Snapshot
	err := s.idx.Read(ctx, func(x *index) error {
		for _, snap := range x.Snapshots {
			if pending || !snap.Pending {
				out = append(out, *snap)
			}
		}
		return nil
	})
	sortByCreated(out)
	return out, err
}

// Resolve finds a committed snapshot by ID, name or unique ID prefix (≥ 3 chars).
func (s *Store) Resolve(ctx context.Context, ref string) (*Snapshot, error) {
	return s.resolve(ctx, ref, false)
}

// ResolveAny also finds pending records, so `snapshot rm` can remove what a crashed save or
// import left (its name would stay taken until GC's grace ends).
func (s *Store) ResolveAny(ctx context.Context, ref string) (*Snapshot, error) {
	return s.resolve(ctx, ref, true)
}

func (s *Store) resolve(ctx context.Context, ref string, pending bool) (*Snapshot, error) {
	all, err := s.list(ctx, pending)
	if err != nil {
		return nil, err
	}
	var hits []*Snapshot
	for i := range all {
		if all[i].ID == ref || all[i].Name == ref {
			return &all[i], nil
		}
		if len(ref) >= 3 && strings.HasPrefix(all[i].ID, strings.ToUpper(ref)) {
			hits = append(hits, &all[i])
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return nil, fmt.Errorf("snapshot %q: %w (see 'cocoon snapshot list')", ref, ErrNotFound)
	default:
		return nil, fmt.Errorf("snapshot %q is ambiguous: %d snapshots have IDs starting with it", ref, len(hits))
	}
}

// maxManifestBytes bounds the manifest read from an archive.
const maxManifestBytes = 1 << 20

// ReadManifest loads the manifest of a snapshot directory (from an import: untrusted),
// validates it (Validate) and checks the directory holds exactly the declared files with
// their declared sizes.
func ReadManifest(dir string) (*Manifest, error) {
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("invalid snapshot: %s missing: %w", ManifestName, err)
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, maxManifestBytes))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("invalid snapshot: parse %s: %w", ManifestName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid snapshot: %s holds more than one JSON value", ManifestName)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("snapshot manifest version %d is not supported: this cocoon imports version %d, whose files carry digests", m.Version, ManifestVersion)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, m.check(dir)
}

// Verify compares the files an import extracted with the manifest's declarations: every
// payload must have been extracted with the declared size and digest.
func (m *Manifest) Verify(got []archive.Entry) error {
	byName := make(map[string]archive.Entry, len(got))
	for _, e := range got {
		byName[e.Name] = e
	}
	for _, f := range m.Files {
		e, ok := byName[f.Name]
		switch {
		case !ok:
			return fmt.Errorf("invalid snapshot: file %s is not in the archive", f.Name)
		case e.Size != f.Size || e.Digest != f.Digest:
			return fmt.Errorf("invalid snapshot: file %s does not match its manifest digest (damaged or altered archive)", f.Name)
		}
	}
	return nil
}

// check verifies every declared file exists with its declared apparent size and nothing else
// is present.
func (m *Manifest) check(dir string) error {
	declared := map[string]bool{ManifestName: true}
	for _, f := range m.Files {
		if !allowedFor(m.Hypervisor, f.Name) || f.Name == ManifestName {
			return fmt.Errorf("invalid snapshot: manifest declares unexpected file %q", f.Name)
		}
		st, err := os.Lstat(filepath.Join(dir, f.Name))
		if err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("invalid snapshot: file %s is missing or not a regular file", f.Name)
		}
		if st.Size() != f.Size {
			return fmt.Errorf("invalid snapshot: file %s has %d bytes, manifest declares %d", f.Name, st.Size(), f.Size)
		}
		declared[f.Name] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !declared[e.Name()] {
			return fmt.Errorf("invalid snapshot: undeclared file %s", e.Name())
		}
	}
	return nil
}

// WriteManifest records the payload files' sizes and digests and writes the manifest
// atomically. Digests read only the files' data extents; call it after the VM is resumed.
func WriteManifest(dir string, m *Manifest) error {
	m.Version = ManifestVersion
	m.Files = m.Files[:0]
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == ManifestName {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		digest, err := archive.FileDigest(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		m.Files = append(m.Files, File{Name: e.Name(), Size: info.Size(), Digest: digest})
	}
	if err := m.Validate(); err != nil { // what another host would refuse to import
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(filepath.Join(dir, ManifestName), append(data, '\n'), 0o644)
}
