// Package config turns flags, COCOON_* environment variables, an optional config file and
// defaults into one validated, immutable Config (precedence in that order).
package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the validated configuration. It is built once per command and never mutated.
type Config struct {
	RootDir    string   `mapstructure:"root_dir"`
	RunDir     string   `mapstructure:"run_dir"`
	LogDir     string   `mapstructure:"log_dir"`
	CNIConfDir string   `mapstructure:"cni_conf_dir"`
	CNIBinDir  string   `mapstructure:"cni_bin_dir"`
	DNS        []string `mapstructure:"-"`
	Log        Log      `mapstructure:"log"`

	// Hypervisor is the backend for new VMs: auto, qemu, cloud-hypervisor or firecracker.
	Hypervisor string `mapstructure:"hypervisor"`
	// Accel is the QEMU accelerator: auto (KVM where it really works, else TCG), kvm or tcg.
	Accel      string `mapstructure:"accel"`
	QEMUBinary string `mapstructure:"qemu_binary"`
	CHBinary   string `mapstructure:"ch_binary"`
	FCBinary   string `mapstructure:"fc_binary"`
	// CHFirmware is Cloud Hypervisor's UEFI firmware (CLOUDHV.fd); "" = <root_dir>/firmware/CLOUDHV.fd.
	CHFirmware string `mapstructure:"ch_firmware"`
	// MemoryDir holds guest RAM files; tmpfs keeps snapshots and clones off the disk.
	MemoryDir    string `mapstructure:"memory_dir"`
	FirmwareCode string `mapstructure:"firmware_code"`
	FirmwareVars string `mapstructure:"firmware_vars"`
	// arm64 guests' UEFI (Debian's qemu-efi-aarch64)
	FirmwareCodeARM64 string `mapstructure:"firmware_code_arm64"`
	FirmwareVarsARM64 string `mapstructure:"firmware_vars_arm64"`

	StopTimeoutSeconds          int `mapstructure:"stop_timeout_seconds"`
	TerminateGracePeriodSeconds int `mapstructure:"terminate_grace_period_seconds"`
	SocketWaitTimeoutSeconds    int `mapstructure:"socket_wait_timeout_seconds"`
	PoolSize                    int `mapstructure:"pool_size"`
	// MaxLayerSize caps what one OCI layer (or an imported image tar) may expand to, e.g. "64G";
	// the free space of the image temp dir caps it too. MaxLayerBytes is it parsed.
	MaxLayerSize  string `mapstructure:"max_layer_size"`
	MaxLayerBytes int64  `mapstructure:"-"`
	// MemoryMerge makes every hypervisor this host launches mergeable by KSM, so identical
	// pages of different VMs are stored once. Off by default: it trades isolation for density.
	MemoryMerge bool `mapstructure:"memory_merge"`
}

// Log configures the CLI's own log (not the per-VM hypervisor logs, which live in LogDir).
type Log struct {
	Level      string `mapstructure:"level"`
	Format     string `mapstructure:"format"` // text or json
	File       string `mapstructure:"file"`   // empty: stderr
	MaxSizeMB  int    `mapstructure:"max_size_mb"`
	MaxAgeDays int    `mapstructure:"max_age_days"`
	MaxBackups int    `mapstructure:"max_backups"`
}

// defaults lists every key: viper only maps COCOON_* variables onto keys it knows.
var defaults = map[string]any{
	"root_dir":                       "/var/lib/cocoon",
	"run_dir":                        "/var/lib/cocoon/run",
	"log_dir":                        "/var/log/cocoon",
	"cni_conf_dir":                   "/etc/cni/net.d",
	"cni_bin_dir":                    "/opt/cni/bin",
	"dns":                            "8.8.8.8,1.1.1.1",
	"log.level":                      "info",
	"log.format":                     "text",
	"log.file":                       "",
	"log.max_size_mb":                100,
	"log.max_age_days":               0,
	"log.max_backups":                5,
	"hypervisor":                     "auto",
	"accel":                          "auto",
	"qemu_binary":                    "qemu-system-x86_64",
	"ch_binary":                      "cloud-hypervisor",
	"fc_binary":                      "firecracker",
	"ch_firmware":                    "",
	"memory_dir":                     "/dev/shm/cocoon",
	"firmware_code":                  "/usr/share/OVMF/OVMF_CODE.fd",
	"firmware_vars":                  "/usr/share/OVMF/OVMF_VARS.fd",
	"firmware_code_arm64":            "/usr/share/AAVMF/AAVMF_CODE.fd",
	"firmware_vars_arm64":            "/usr/share/AAVMF/AAVMF_VARS.fd",
	"stop_timeout_seconds":           30,
	"terminate_grace_period_seconds": 5,
	"socket_wait_timeout_seconds":    10,
	"pool_size":                      0,
	"max_layer_size":                 "64G",
	"memory_merge":                   false,
}

// FlagKeys maps global flag names to config keys.
var FlagKeys = map[string]string{
	"root-dir":     "root_dir",
	"run-dir":      "run_dir",
	"log-dir":      "log_dir",
	"log-level":    "log.level",
	"cni-conf-dir": "cni_conf_dir",
	"cni-bin-dir":  "cni_bin_dir",
	"dns":          "dns",
}

// Load builds the Config from flags (only those the user set), COCOON_* env, the file and defaults.
func Load(file string, flags *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("COCOON")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if flags != nil {
		for name, key := range FlagKeys {
			if f := flags.Lookup(name); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, fmt.Errorf("bind flag --%s: %w", name, err)
				}
			}
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config %s: %s (fix the file or drop --config)", file, oneLine(err))
		}
		for _, k := range v.AllKeys() {
			if _, ok := originalKeys[k]; ok {
				continue
			}
			if _, ok := defaults[k]; !ok {
				return nil, fmt.Errorf("config %s: unknown key %q (known keys: %s)", file, k, strings.Join(knownKeys(), ", "))
			}
		}
		if err := applyOriginalKeys(v, file); err != nil {
			return nil, err
		}
	}
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		return nil, fmt.Errorf("config: %s", oneLine(err))
	}
	dns, err := parseDNS(v.Get("dns"))
	if err != nil {
		return nil, err
	}
	c.DNS = dns
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

func knownKeys() []string {
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// parseDNS accepts a comma/semicolon separated string or a list (from a config file).
func parseDNS(raw any) ([]string, error) {
	var parts []string
	switch x := raw.(type) {
	case string:
		parts = strings.FieldsFunc(x, func(r rune) bool { return r == ',' || r == ';' })
	case []any:
		for _, p := range x {
			parts = append(parts, fmt.Sprint(p))
		}
	case []string:
		parts = x
	default:
		return nil, fmt.Errorf("config: dns must be a comma-separated list of IP addresses")
	}
	out := []string{}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if net.ParseIP(p) == nil {
			return nil, fmt.Errorf("config: dns: invalid DNS server address %q (use IP addresses, e.g. --dns 8.8.8.8,1.1.1.1)", p)
		}
		out = append(out, p)
	}
	return out, nil
}

func (c *Config) validate() error {
	for _, d := range []struct {
		key string
		val *string
	}{{"root_dir", &c.RootDir}, {"run_dir", &c.RunDir}, {"log_dir", &c.LogDir}, {"cni_conf_dir", &c.CNIConfDir}, {"cni_bin_dir", &c.CNIBinDir}, {"memory_dir", &c.MemoryDir}} {
		if strings.TrimSpace(*d.val) == "" {
			return fmt.Errorf("%s must not be empty", d.key)
		}
		abs, err := filepath.Abs(*d.val)
		if err != nil {
			return fmt.Errorf("%s %q: %w", d.key, *d.val, err)
		}
		*d.val = abs
	}
	if c.CHFirmware == "" {
		c.CHFirmware = filepath.Join(c.RootDir, "firmware", "CLOUDHV.fd")
	}
	var errs []error
	if !oneOf(strings.ToLower(c.Log.Level), "debug", "info", "warn", "error") {
		errs = append(errs, fmt.Errorf("log.level must be debug, info, warn or error, got %q", c.Log.Level))
	}
	if !oneOf(c.Log.Format, "text", "json") {
		errs = append(errs, fmt.Errorf("log.format must be text or json, got %q", c.Log.Format))
	}
	// The hypervisor name is checked against the registered backends by the engine.
	if c.Hypervisor == "" {
		errs = append(errs, fmt.Errorf("hypervisor must be auto or a backend name, got an empty value"))
	}
	if !oneOf(c.Accel, "auto", "kvm", "tcg") {
		errs = append(errs, fmt.Errorf("accel must be auto, kvm or tcg, got %q", c.Accel))
	}
	if c.StopTimeoutSeconds <= 0 {
		errs = append(errs, fmt.Errorf("stop_timeout_seconds must be > 0, got %d", c.StopTimeoutSeconds))
	}
	if c.TerminateGracePeriodSeconds <= 0 {
		errs = append(errs, fmt.Errorf("terminate_grace_period_seconds must be > 0, got %d", c.TerminateGracePeriodSeconds))
	}
	if c.SocketWaitTimeoutSeconds <= 0 {
		errs = append(errs, fmt.Errorf("socket_wait_timeout_seconds must be > 0, got %d", c.SocketWaitTimeoutSeconds))
	}
	if c.Log.MaxSizeMB < 0 || c.Log.MaxAgeDays < 0 || c.Log.MaxBackups < 0 {
		errs = append(errs, errors.New("log.max_size_mb, log.max_age_days and log.max_backups must be >= 0"))
	}
	if c.PoolSize <= 0 {
		c.PoolSize = runtime.NumCPU()
	}
	if n, err := units.RAMInBytes(c.MaxLayerSize); err != nil || n <= 0 {
		errs = append(errs, fmt.Errorf("max_layer_size must be a positive size such as 64G, got %q", c.MaxLayerSize))
	} else {
		c.MaxLayerBytes = n
	}
	c.Log.Level = strings.ToLower(c.Log.Level)
	if len(errs) > 0 {
		return errs[0] // one line: the first problem; fixing it reveals the next
	}
	return nil
}

func oneOf(s string, opts ...string) bool { return slices.Contains(opts, s) }

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
