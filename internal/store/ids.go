package store

import "strings"

// IDLen is the length of record IDs (VMs, snapshots): crypto/rand.Text, 26 base32 characters.
const IDLen = 26

// MinPrefix is the shortest ID prefix a ref resolves by.
const MinPrefix = 3

// LooksLikeID reports whether s has the shape of a record ID. Case is ignored, as it is when a
// ref is matched against ID prefixes.
func LooksLikeID(s string) bool {
	if len(s) != IDLen {
		return false
	}
	for _, c := range strings.ToUpper(s) {
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// ShadowedID returns an ID of ids that name equals or prefixes as a ref would (case ignored, at
// least MinPrefix characters), or "" when name cannot be mistaken for any of them.
func ShadowedID[V any](name string, ids map[string]V) string {
	if len(name) < MinPrefix {
		return ""
	}
	up := strings.ToUpper(name)
	for id := range ids {
		if strings.HasPrefix(id, up) {
			return id
		}
	}
	return ""
}
