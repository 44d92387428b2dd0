package config

import (
	"strings"
	"testing"
)

// A config file of the original Cocoon loads, its keys meaning what they meant there.
func TestOriginalConfigKeys(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"c.yaml", "root_dir: /tmp/r\nuse_firecracker: true\nlog:\n  level: debug\n  filename: /tmp/cocoon.log\n  maxsize: 50\n  maxage: 7\n  maxbackups: 3\n  usejson: true\n"},
		{"c.json", `{"root_dir": "/tmp/r", "use_firecracker": true, "log": {"level": "debug", "filename": "/tmp/cocoon.log", "maxsize": 50, "maxage": 7, "maxbackups": 3, "usejson": true}}`},
		{"c.toml", "root_dir = \"/tmp/r\"\nuse_firecracker = true\n[log]\nlevel = \"debug\"\nfilename = \"/tmp/cocoon.log\"\nmaxsize = 50\nmaxage = 7\nmaxbackups = 3\nusejson = true\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(writeFile(t, tc.name, tc.body), flagSet())
			if err != nil {
				t.Fatal(err)
			}
			l := c.Log
			if l.File != "/tmp/cocoon.log" || l.MaxSizeMB != 50 || l.MaxAgeDays != 7 || l.MaxBackups != 3 || l.Format != "json" || l.Level != "debug" {
				t.Fatalf("log: %+v", l)
			}
			if c.Hypervisor != "firecracker" {
				t.Fatalf("use_firecracker: hypervisor %q", c.Hypervisor)
			}
		})
	}
}

func TestOriginalConfigKeysDefaultsAndPrecedence(t *testing.T) {
	// use_firecracker: false and usejson: false leave the defaults.
	c, err := Load(writeFile(t, "c.yaml", "use_firecracker: false\nlog:\n  usejson: false\n"), flagSet())
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor != "auto" || c.Log.Format != "text" {
		t.Fatalf("got hypervisor %q, log format %q", c.Hypervisor, c.Log.Format)
	}
	// The environment still beats the file.
	t.Setenv("COCOON_LOG_FILE", "/tmp/from-env.log")
	c, err = Load(writeFile(t, "c.yaml", "log:\n  filename: /tmp/from-file.log\n"), flagSet())
	if err != nil || c.Log.File != "/tmp/from-env.log" {
		t.Fatalf("env must beat the file's log.filename: %v %+v", err, c.Log)
	}
}

func TestOriginalConfigKeysBadInput(t *testing.T) {
	for body, want := range map[string]string{
		"log:\n  filename: a\n  file: b\n": "log.filename and log.file mean the same",
		"log:\n  maxsize: big\n":           "log.maxsize: want a whole number",
		"use_firecracker: maybe\n":         "use_firecracker: want true or false",
	} {
		_, err := Load(writeFile(t, "c.yaml", body), flagSet())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
}
