package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

func sortByCreated(s []Snapshot) {
	sort.Slice(s, func(i, j int) bool { return s[i].CreatedAt.Before(s[j].CreatedAt) })
}

// PendingGrace is how long a pending record may exist before GC treats it as a crash leftover.
const PendingGrace = 24 * time.Hour

// BlobIDs returns the image blobs every snapshot (pending ones included) references.
func (s *Store) BlobIDs(ctx context.Context) (map[string]struct{}, error) {
	ids := map[string]struct{}{}
	err := s.idx.Read(ctx, func(x *index) error {
		for _, snap := range x.Snapshots {
			for _, b := range snap.Manifest.ImageBlobIDs {
				ids[b] = struct{}{}
			}
		}
		return nil
	})
	return ids, err
}

// GC removes stale pending records, data dirs without a record and old staging dirs.
func (s *Store) GC(ctx context.Context) ([]string, error) {
	var removed []string
	known := map[string]bool{}
	var stale []string
	if err := s.idx.Read(ctx, func(x *index) error {
		for id, snap := range x.Snapshots {
			known[id] = true
			if snap.Pending && time.Since(snap.CreatedAt) > PendingGrace {
				stale = append(stale, id)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var errs []error
	for _, id := range stale {
		if err := s.Drop(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "snapshot "+id)
	}
	entries, _ := os.ReadDir(filepath.Join(s.root, "data"))
	for _, e := range entries {
		if !known[e.Name()] {
			p := filepath.Join(s.root, "data", e.Name())
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
				continue
			}
			removed = append(removed, p)
		}
	}
	staging, _ := os.ReadDir(filepath.Join(s.root, "staging"))
	for _, e := range staging {
		p := filepath.Join(s.root, "staging", e.Name())
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			ok, err := removeUnheld(p)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				removed = append(removed, p)
			}
		}
	}
	return removed, errors.Join(errs...)
}
