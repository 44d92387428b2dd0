// Package version holds build information injected with -ldflags -X.
package version

var (
	// Version is the release version.
	Version = "dev"
	// Revision is the git revision the binary was built from.
	Revision = "unknown"
	// BuiltAt is the build time (RFC 3339, UTC).
	BuiltAt = "unknown"
)
