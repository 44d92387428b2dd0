package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: any config file content gives a valid Config or a one-line error, never a panic.
func FuzzLoad(f *testing.F) {
	f.Add("root_dir: /var/lib/x\npool_size: 4\nlog:\n  level: DEBUG\n", ".yaml")
	f.Add(`{"dns": "1.1.1.1, 8.8.8.8", "stop_timeout_seconds": 3}`, ".json")
	f.Add("accel = \"tcg\"\n[log]\nmax_backups = -1\n", ".toml")
	f.Add("dns: [1.1.1.1, '::1']\n", ".yml")
	f.Add("root_dir: ''\nhypervisor: [x]\n", ".yaml")
	f.Fuzz(func(t *testing.T, body, ext string) {
		if !map[string]bool{".yaml": true, ".yml": true, ".json": true, ".toml": true}[ext] {
			return
		}
		p := filepath.Join(t.TempDir(), "c"+ext)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, nil)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		for _, d := range []string{c.RootDir, c.RunDir, c.LogDir, c.MemoryDir} {
			if !filepath.IsAbs(d) {
				t.Fatalf("dir %q is not absolute", d)
			}
		}
		if c.PoolSize <= 0 || len(c.DNS) == 0 {
			t.Fatalf("pool size %d, DNS %v", c.PoolSize, c.DNS)
		}
	})
}
