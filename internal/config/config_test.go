package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func flagSet(args ...string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	for name := range FlagKeys {
		fs.String(name, "", "")
	}
	if err := fs.Parse(args); err != nil {
		panic(err)
	}
	return fs
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load("", flagSet())
	if err != nil {
		t.Fatal(err)
	}
	if c.CHFirmware != "/var/lib/cocoon/firmware/CLOUDHV.fd" {
		t.Fatalf("ch_firmware default %q: want <root_dir>/firmware/CLOUDHV.fd", c.CHFirmware)
	}
	if c.RootDir != "/var/lib/cocoon" || c.RunDir != "/var/lib/cocoon/run" || c.LogDir != "/var/log/cocoon" ||
		c.CNIBinDir != "/opt/cni/bin" || c.CNIConfDir != "/etc/cni/net.d" || c.Log.Level != "info" ||
		strings.Join(c.DNS, ",") != "8.8.8.8,1.1.1.1" || c.StopTimeoutSeconds != 30 || c.PoolSize < 1 || c.MaxLayerBytes != 64<<30 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

// Every documented key must take effect from the config file and from COCOON_* env, and a flag
// must beat both (the original's COCOON_LOG_LEVEL and rotation keys silently did nothing).
func TestEveryKeyTakesEffect(t *testing.T) {
	file := writeFile(t, "c.yaml", `
root_dir: /f/root
run_dir: /f/run
log_dir: /f/log
cni_conf_dir: /f/conf
cni_bin_dir: /f/bin
dns: "9.9.9.9"
hypervisor: qemu
accel: tcg
qemu_binary: /f/qemu
ch_binary: /f/ch
fc_binary: /f/fc
ch_firmware: /f/CLOUDHV.fd
memory_dir: /f/mem
firmware_code: /f/code.fd
firmware_vars: /f/vars.fd
firmware_code_arm64: /f/acode.fd
firmware_vars_arm64: /f/avars.fd
stop_timeout_seconds: 7
terminate_grace_period_seconds: 3
socket_wait_timeout_seconds: 4
pool_size: 3
max_layer_size: 2G
memory_merge: true
log:
  level: warn
  format: json
  file: /f/cocoon.log
  max_size_mb: 11
  max_age_days: 12
  max_backups: 13
`)
	c, err := Load(file, flagSet())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{RootDir: "/f/root", RunDir: "/f/run", LogDir: "/f/log", CNIConfDir: "/f/conf", CNIBinDir: "/f/bin",
		DNS: []string{"9.9.9.9"}, Hypervisor: "qemu", Accel: "tcg", QEMUBinary: "/f/qemu", CHBinary: "/f/ch", FCBinary: "/f/fc", CHFirmware: "/f/CLOUDHV.fd",
		MemoryDir: "/f/mem", FirmwareCode: "/f/code.fd", FirmwareVars: "/f/vars.fd", StopTimeoutSeconds: 7,
		FirmwareCodeARM64: "/f/acode.fd", FirmwareVarsARM64: "/f/avars.fd",
		TerminateGracePeriodSeconds: 3, SocketWaitTimeoutSeconds: 4, PoolSize: 3, MaxLayerSize: "2G", MaxLayerBytes: 2 << 30, MemoryMerge: true,
		Log: Log{Level: "warn", Format: "json", File: "/f/cocoon.log", MaxSizeMB: 11, MaxAgeDays: 12, MaxBackups: 13}}
	assertConfig(t, c, &want)

	env := map[string]string{
		"COCOON_ROOT_DIR": "/e/root", "COCOON_RUN_DIR": "/e/run", "COCOON_LOG_DIR": "/e/log",
		"COCOON_CNI_CONF_DIR": "/e/conf", "COCOON_CNI_BIN_DIR": "/e/bin", "COCOON_DNS": "1.2.3.4;5.6.7.8",
		"COCOON_HYPERVISOR": "firecracker", "COCOON_ACCEL": "kvm", "COCOON_QEMU_BINARY": "/e/qemu",
		"COCOON_CH_BINARY": "/e/ch", "COCOON_FC_BINARY": "/e/fc", "COCOON_CH_FIRMWARE": "/e/CLOUDHV.fd", "COCOON_MEMORY_DIR": "/e/mem",
		"COCOON_FIRMWARE_CODE": "/e/code.fd", "COCOON_FIRMWARE_VARS": "/e/vars.fd",
		"COCOON_FIRMWARE_CODE_ARM64": "/e/acode.fd", "COCOON_FIRMWARE_VARS_ARM64": "/e/avars.fd",
		"COCOON_STOP_TIMEOUT_SECONDS": "8", "COCOON_TERMINATE_GRACE_PERIOD_SECONDS": "2",
		"COCOON_SOCKET_WAIT_TIMEOUT_SECONDS": "6", "COCOON_POOL_SIZE": "5", "COCOON_MAX_LAYER_SIZE": "512m", "COCOON_LOG_LEVEL": "debug",
		"COCOON_LOG_FORMAT": "text", "COCOON_LOG_FILE": "/e/cocoon.log", "COCOON_LOG_MAX_SIZE_MB": "21",
		"COCOON_LOG_MAX_AGE_DAYS": "22", "COCOON_LOG_MAX_BACKUPS": "23", "COCOON_MEMORY_MERGE": "true",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	c, err = Load(file, flagSet())
	if err != nil {
		t.Fatal(err)
	}
	want = Config{RootDir: "/e/root", RunDir: "/e/run", LogDir: "/e/log", CNIConfDir: "/e/conf", CNIBinDir: "/e/bin",
		DNS: []string{"1.2.3.4", "5.6.7.8"}, Hypervisor: "firecracker", Accel: "kvm", QEMUBinary: "/e/qemu", CHBinary: "/e/ch",
		FCBinary: "/e/fc", CHFirmware: "/e/CLOUDHV.fd", MemoryDir: "/e/mem", FirmwareCode: "/e/code.fd", FirmwareVars: "/e/vars.fd", StopTimeoutSeconds: 8,
		FirmwareCodeARM64: "/e/acode.fd", FirmwareVarsARM64: "/e/avars.fd",
		TerminateGracePeriodSeconds: 2, SocketWaitTimeoutSeconds: 6, PoolSize: 5, MaxLayerSize: "512m", MaxLayerBytes: 512 << 20, MemoryMerge: true,
		Log: Log{Level: "debug", Format: "text", File: "/e/cocoon.log", MaxSizeMB: 21, MaxAgeDays: 22, MaxBackups: 23}}
	assertConfig(t, c, &want)

	c, err = Load(file, flagSet("--root-dir=/x/root", "--run-dir=/x/run", "--log-dir=/x/log", "--log-level=error",
		"--cni-conf-dir=/x/conf", "--cni-bin-dir=/x/bin", "--dns=4.4.4.4"))
	if err != nil {
		t.Fatal(err)
	}
	want.RootDir, want.RunDir, want.LogDir, want.Log.Level = "/x/root", "/x/run", "/x/log", "error"
	want.CNIConfDir, want.CNIBinDir, want.DNS = "/x/conf", "/x/bin", []string{"4.4.4.4"}
	assertConfig(t, c, &want)
}

func assertConfig(t *testing.T, got, want *Config) {
	t.Helper()
	g, w := *got, *want
	if strings.Join(g.DNS, ",") != strings.Join(w.DNS, ",") {
		t.Errorf("dns = %v, want %v", g.DNS, w.DNS)
	}
	g.DNS, w.DNS = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("config mismatch:\n got %+v\nwant %+v", g, w)
	}
}

func TestFormatsByExtension(t *testing.T) {
	for name, body := range map[string]string{
		"c.json": `{"root_dir": "/j", "log": {"level": "debug"}}`,
		"c.toml": "root_dir = \"/j\"\n[log]\nlevel = \"debug\"\n",
	} {
		c, err := Load(writeFile(t, name, body), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.RootDir != "/j" || c.Log.Level != "debug" {
			t.Fatalf("%s: got %+v", name, c)
		}
	}
}

func TestBadInputIsOneClearLine(t *testing.T) {
	cases := map[string]struct{ file, body, env, want string }{
		"malformed yaml":  {"c.yaml", "root_dir: [\n", "", "read config"},
		"unknown key":     {"c.yaml", "rootdir: /x\n", "", `unknown key "rootdir"`},
		"bad dns":         {"", "", "COCOON_DNS=not-an-ip", `invalid DNS server address "not-an-ip"`},
		"bad level":       {"", "", "COCOON_LOG_LEVEL=loud", "log.level must be"},
		"bad timeout":     {"c.yaml", "stop_timeout_seconds: 0\n", "", "stop_timeout_seconds must be > 0"},
		"missing file":    {"missing.yaml", "", "", "read config"},
		"not a number":    {"c.yaml", "pool_size: many\n", "", "config"},
		"empty root dir":  {"", "", "COCOON_ROOT_DIR= ", "root_dir must not be empty"},
		"bad log format":  {"", "", "COCOON_LOG_FORMAT=xml", "log.format must be"},
		"negative backup": {"c.yaml", "log:\n  max_backups: -1\n", "", "must be >= 0"},
		"bad layer size":  {"", "", "COCOON_MAX_LAYER_SIZE=huge", "max_layer_size must be"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			file := ""
			if tc.file != "" {
				if tc.body != "" {
					file = writeFile(t, tc.file, tc.body)
				} else {
					file = filepath.Join(t.TempDir(), tc.file)
				}
			}
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			_, err := Load(file, flagSet())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want one-line error containing %q, got %v", tc.want, err)
			}
		})
	}
}
