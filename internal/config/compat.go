package config

import (
	"fmt"
	"math"
	"strconv"

	"github.com/spf13/viper"
)

// originalKeys are config-file keys of the original Cocoon, mapped to this build's keys so
// its config files load unchanged. Each returns the value for the new key, or ok=false when
// the old key asks for nothing (use_firecracker: false).
var originalKeys = map[string]struct {
	key     string
	convert func(any) (v any, ok bool, err error)
}{
	"log.filename":    {"log.file", asString},
	"log.maxsize":     {"log.max_size_mb", asInt},
	"log.maxage":      {"log.max_age_days", asInt},
	"log.maxbackups":  {"log.max_backups", asInt},
	"log.usejson":     {"log.format", boolTo("json", "text")},
	"use_firecracker": {"hypervisor", boolTo("firecracker", "")},
}

func asString(x any) (any, bool, error) {
	if s, ok := x.(string); ok {
		return s, true, nil
	}
	return nil, false, fmt.Errorf("want a string, got %v", x)
}

// asInt takes what YAML (int), TOML (int64) and JSON (float64) decoders give.
func asInt(x any) (any, bool, error) {
	switch n := x.(type) {
	case int:
		return n, true, nil
	case int64:
		return int(n), true, nil
	case float64:
		if n == math.Trunc(n) {
			return int(n), true, nil
		}
	case string:
		if i, err := strconv.Atoi(n); err == nil {
			return i, true, nil
		}
	}
	return nil, false, fmt.Errorf("want a whole number, got %v", x)
}

func asBool(x any) (bool, error) {
	switch b := x.(type) {
	case bool:
		return b, nil
	case string:
		if v, err := strconv.ParseBool(b); err == nil {
			return v, nil
		}
	}
	return false, fmt.Errorf("want true or false, got %v", x)
}

func boolTo(yes, no string) func(any) (any, bool, error) {
	return func(x any) (any, bool, error) {
		b, err := asBool(x)
		if err != nil || (!b && no == "") {
			return nil, false, err
		}
		if b {
			return yes, true, nil
		}
		return no, true, nil
	}
}

// applyOriginalKeys merges the file's original keys into the config layer (below flags and
// environment, like any file key). Giving both an original key and its new name is an error.
func applyOriginalKeys(v *viper.Viper, file string) error {
	merged := map[string]any{}
	for old, m := range originalKeys {
		if !v.InConfig(old) {
			continue
		}
		if v.InConfig(m.key) {
			return fmt.Errorf("config %s: %s and %s mean the same: keep one", file, old, m.key)
		}
		val, ok, err := m.convert(v.Get(old))
		if err != nil {
			return fmt.Errorf("config %s: %s: %w", file, old, err)
		}
		if ok {
			setNested(merged, m.key, val)
		}
	}
	if len(merged) == 0 {
		return nil
	}
	return v.MergeConfigMap(merged)
}

// setNested sets "a.b" = val as {"a": {"b": val}}, the form MergeConfigMap expects.
func setNested(m map[string]any, key string, val any) {
	for i := range len(key) {
		if key[i] == '.' {
			sub, ok := m[key[:i]].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[key[:i]] = sub
			}
			setNested(sub, key[i+1:], val)
			return
		}
	}
	m[key] = val
}
