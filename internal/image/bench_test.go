package image

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPullDebian measures pull+convert of the Debian guest image from an in-process
// registry (MB/s of uncompressed layer data) and reports the time of a fully cached re-pull.
func BenchmarkPullDebian(b *testing.B) {
	img := guestLayout(b, "debian")
	needOCI(b)
	reg := startRegistry(b)
	ref := reg.push(b, "cocoon/debian:bench", img)
	ctx := context.Background()
	var cached time.Duration
	for b.Loop() {
		b.StopTimer()
		m := NewManager(b.TempDir(), Options{})
		b.StartTimer()
		_, st, err := m.Pull(ctx, ref, false)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(st.Bytes)
		b.StopTimer()
		start := time.Now()
		if _, st, err := m.Pull(ctx, ref, false); err != nil || !st.UpToDate {
			b.Fatalf("cached re-pull: %+v %v", st, err)
		}
		cached += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(cached.Microseconds())/float64(b.N), "µs/cached-pull")
}
