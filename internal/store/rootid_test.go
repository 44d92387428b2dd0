package store

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestRootIDIsStableAndShared(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			id, err := RootID(dir)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || id == "" {
			t.Fatalf("concurrent first uses disagree: %q", ids)
		}
	}
	if other, _ := RootID(t.TempDir()); other == ids[0] {
		t.Fatal("two roots share an ID")
	}
	if err := os.WriteFile(filepath.Join(dir, rootIDFile), []byte("../x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RootID(dir); err == nil {
		t.Fatal("a corrupt root id was accepted")
	}
}
