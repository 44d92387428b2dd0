package archive

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const benchSize = 256 << 20

// benchSnapshot writes a 256 MiB file of real data, alternating 1 MiB of random bytes
// (incompressible, like encrypted or compressed guest data) with 1 MiB of log-like text.
func benchSnapshot(b *testing.B) (dir string, files []string) {
	b.Helper()
	dir = b.TempDir()
	f, err := os.Create(filepath.Join(dir, "mem"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rnd := rand.NewChaCha8([32]byte{1})
	chunk := make([]byte, 1<<20)
	for i := 0; i < benchSize/len(chunk); i++ {
		if i%2 == 0 {
			_, _ = rnd.Read(chunk)
		} else {
			chunk = chunk[:0]
			for line := 0; len(chunk) < 1<<20; line++ {
				chunk = fmt.Appendf(chunk, "%08d kernel: eth0 rx %d packets, %d bytes, queue %d\n", line, line*7, line*1500, line%4)
			}
			chunk = chunk[:1<<20]
		}
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	return dir, []string{"mem"}
}

// mbps times one run of fn over n bytes.
func mbps(b *testing.B, n int64, fn func() error) float64 {
	b.Helper()
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds() / 1e6
}

// BenchmarkExport reports Export's MB/s and, measured in the same run, single-threaded
// compress/gzip at the same level on the same bytes, with the speed-up between them.
func BenchmarkExport(b *testing.B) {
	dir, files := benchSnapshot(b)
	std := mbps(b, benchSize, func() error {
		src, err := os.Open(filepath.Join(dir, files[0]))
		if err != nil {
			return err
		}
		defer src.Close()
		zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
		if _, err := io.Copy(zw, src); err != nil {
			return err
		}
		return zw.Close()
	})
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := Export(context.Background(), dir, files, io.Discard, ExportOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	ours := float64(benchSize) * float64(b.N) / b.Elapsed().Seconds() / 1e6
	b.ReportMetric(std, "stdgzip-MB/s")
	b.ReportMetric(ours/std, "x-stdgzip")
}

// BenchmarkImport reports Import's MB/s (decompress, extract, fsync) and, measured in the same
// run, single-threaded compress/gzip decompressing the same archive to nowhere.
func BenchmarkImport(b *testing.B) {
	dir, files := benchSnapshot(b)
	archive := filepath.Join(b.TempDir(), "snap.tar.gz")
	out, err := os.Create(archive)
	if err != nil {
		b.Fatal(err)
	}
	if err := Export(context.Background(), dir, files, out, ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	std := mbps(b, benchSize, func() error {
		src, err := os.Open(archive)
		if err != nil {
			return err
		}
		defer src.Close()
		zr, err := gzip.NewReader(src)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, zr)
		return err
	})
	stagingRoot := b.TempDir()
	b.SetBytes(benchSize)
	for b.Loop() {
		staging, err := os.MkdirTemp(stagingRoot, "staging-")
		if err != nil {
			b.Fatal(err)
		}
		src, err := os.Open(archive)
		if err != nil {
			b.Fatal(err)
		}
		_, err = Import(context.Background(), src, staging, Limits{})
		src.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(staging); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	ours := float64(benchSize) * float64(b.N) / b.Elapsed().Seconds() / 1e6
	b.ReportMetric(std, "stdgunzip-MB/s")
	b.ReportMetric(ours/std, "x-stdgunzip")
}

// BenchmarkFileDigest reports FileDigest's MB/s of data on a 1 GiB sparse file holding the
// 256 MiB benchmark data and, measured in the same run, plain SHA-256 of the whole file (what
// hashing holes would cost), with the speed-up between them.
func BenchmarkFileDigest(b *testing.B) {
	dir, files := benchSnapshot(b)
	path := filepath.Join(dir, files[0])
	if err := os.Truncate(path, 4*benchSize); err != nil {
		b.Fatal(err)
	}
	plain := mbps(b, benchSize, func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(sha256.New(), f)
		return err
	})
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := FileDigest(path); err != nil {
			b.Fatal(err)
		}
	}
	ours := float64(benchSize) * float64(b.N) / b.Elapsed().Seconds() / 1e6
	b.ReportMetric(plain, "plainsha256-data-MB/s")
	b.ReportMetric(ours/plain, "x-plainsha256")
}
