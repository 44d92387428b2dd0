// Package store keeps one typed JSON index per module on disk.
//
// Reads take a shared flock, writes an exclusive one; every write replaces the file atomically
// (temp file, fsync, rename, directory fsync), so a crash leaves the old or the new index, never
// a torn one. Long operations must not run inside Update: take a per-record lock (RecordLock)
// for the slow work and update the index briefly before and after.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cocoonstack/cocoon/internal/crashpoint"
	"github.com/cocoonstack/cocoon/internal/lock"

	// Indexes hold ~2 KB per VM: goccy/go-json decodes them 4× faster than encoding/json
	// (vm list at 1000 VMs is mostly decoding), with the same format and semantics.
	json "github.com/goccy/go-json"
)

// Index is implemented by every index type: embed Header and give Init to allocate maps.
type Index interface {
	Init()
	schema() int
	setSchema(int)
}

// Header carries the schema version of an index file.
type Header struct {
	Schema int `json:"schema"`
}

func (h *Header) schema() int     { return h.Schema }
func (h *Header) setSchema(v int) { h.Schema = v }

// Cloner is implemented by index types that can deep-copy themselves (sharing no map, slice
// or pointer with the original). Their store keeps the last index it decoded or wrote and
// hands out copies while the file holds the same bytes: decoding a large index is the main
// cost of a command that reads it several times (resolve, re-read under the lock, update).
type Cloner[P any] interface {
	Clone() P
}

// Store is one index file of type T (a pointer type implementing Index is *T).
type Store[T any, P interface {
	*T
	Index
}] struct {
	path     string
	lockPath string
	version  int

	mu   sync.Mutex
	data []byte // the file's bytes when idx was decoded or written
	idx  P      // pristine: only copies leave the store
}

// New returns the store kept in dir/name.json, guarded by dir/name.lock, at schema version.
func New[T any, P interface {
	*T
	Index
}](dir, name string, version int) *Store[T, P] {
	return &Store[T, P]{
		path:     filepath.Join(dir, name+".json"),
		lockPath: filepath.Join(dir, name+".lock"),
		version:  version,
	}
}

// Path is the index file's path.
func (s *Store[T, P]) Path() string { return s.path }

// Lock returns a new handle on the index lock, for callers (GC) that must hold several indexes
// at once. Each handle is its own open file, so handles exclude each other even in one process.
func (s *Store[T, P]) Lock() *lock.Lock { return lock.New(s.lockPath) }

// Read calls fn with the current index under a shared lock. fn must not modify it.
func (s *Store[T, P]) Read(ctx context.Context, fn func(P) error) error {
	l := s.Lock()
	if err := l.RLock(ctx); err != nil {
		return err
	}
	defer l.Unlock() //nolint:errcheck // closing the file releases the flock in any case
	idx, err := s.ReadUnlocked()
	if err != nil {
		return err
	}
	return fn(idx)
}

// ErrUnchanged may be returned by an Update callback that found nothing to change: Update then
// returns nil without rewriting the file (read commands stay read-only on disk).
var ErrUnchanged = errors.New("index unchanged")

// Update calls fn with the current index under the exclusive lock and writes the result
// atomically when fn returns nil. When fn fails nothing is written.
func (s *Store[T, P]) Update(ctx context.Context, fn func(P) error) error {
	l := s.Lock()
	if err := l.Lock(ctx); err != nil {
		return err
	}
	defer l.Unlock() //nolint:errcheck
	idx, err := s.ReadUnlocked()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		if errors.Is(err, ErrUnchanged) {
			return nil
		}
		return err
	}
	return s.WriteUnlocked(idx)
}

// View is Read for callers that only look: fn gets the store's own decoded index (no copy),
// which it must neither modify nor keep any part of: it copies what it needs.
func (s *Store[T, P]) View(ctx context.Context, fn func(P) error) error {
	l := s.Lock()
	if err := l.RLock(ctx); err != nil {
		return err
	}
	defer l.Unlock() //nolint:errcheck
	idx, _, err := s.load()
	if err != nil {
		return err
	}
	return fn(idx)
}

// ReadUnlocked loads the index without locking; only for callers already holding Lock().
// The caller owns the result.
func (s *Store[T, P]) ReadUnlocked() (P, error) {
	idx, shared, err := s.load()
	if err != nil || !shared {
		return idx, err
	}
	return any(idx).(Cloner[P]).Clone(), nil
}

// load returns the index the file holds. For a Cloner type it is the store's own copy (shared
// is true: the caller must not modify it), decoded only when the file's bytes changed since
// the last decode or write; same bytes decode to the same index, whoever wrote them.
func (s *Store[T, P]) load() (idx P, shared bool, err error) {
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		idx = P(new(T))
		idx.Init()
		idx.setSchema(s.version)
		return idx, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read index %s: %w", s.path, err)
	}
	s.mu.Lock()
	if s.idx != nil && bytes.Equal(s.data, data) {
		idx = s.idx
	}
	s.mu.Unlock()
	if idx != nil {
		return idx, true, nil
	}
	idx = P(new(T))
	if err := json.Unmarshal(data, idx); err != nil {
		return nil, false, fmt.Errorf("parse index %s: %w (move the file away to start empty)", s.path, err)
	}
	if v := idx.schema(); v > s.version {
		return nil, false, fmt.Errorf("index %s has schema %d, newer than this cocoon's %d: upgrade cocoon", s.path, v, s.version)
	}
	idx.Init()
	idx.setSchema(s.version)
	if _, ok := any(idx).(Cloner[P]); !ok {
		return idx, false, nil
	}
	s.mu.Lock()
	s.data, s.idx = data, idx
	s.mu.Unlock()
	return idx, true, nil
}

// remember keeps a copy of idx, just written as data, for index types that are Cloners.
func (s *Store[T, P]) remember(data []byte, idx P) {
	c, ok := any(idx).(Cloner[P])
	if !ok {
		return
	}
	cp := c.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.idx = data, cp
}

// WriteUnlocked replaces the index atomically; only for callers already holding Lock().
func (s *Store[T, P]) WriteUnlocked(idx P) error {
	data, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode index %s: %w", s.path, err)
	}
	data = append(data, '\n')
	if err := WriteFileAtomic(s.path, data, 0o600); err != nil { // root-only, like the state dirs
		return err
	}
	s.remember(data, idx)
	return nil
}

// WriteFileAtomic writes data to path so that readers see the old or the new content, never a
// mix, even across a crash: temp file in the same dir, fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	return writeFile(path, data, perm, true)
}

// WriteRuntimeFile is WriteFileAtomic without the fsyncs, for files that describe a running
// process (its PID file, its device layout): readers still see the old or the new content,
// and a host crash, the only thing an fsync guards against, ends the process they describe.
func WriteRuntimeFile(path string, data []byte, perm fs.FileMode) error {
	return writeFile(path, data, perm, false)
}

func writeFile(path string, data []byte, perm fs.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create dir for %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()           //nolint:errcheck
			os.Remove(tmp.Name()) //nolint:errcheck
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	crashpoint.Hit()
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	done = true
	defer crashpoint.Hit()
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !isUnsupported(err) {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// Some filesystems refuse fsync on directories; the rename is still atomic there.
func isUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EBADF)
}

// RecordLock returns the per-record lock for long operations on one record (a VM, an image ref).
func RecordLock(dir, kind, id string) *lock.Lock {
	return lock.New(filepath.Join(dir, "locks", kind+"-"+id+".lock"))
}
