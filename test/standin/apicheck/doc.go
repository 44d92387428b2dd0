// Package apicheck is the shared contract check for hypervisor stand-ins (test doubles of
// Cloud Hypervisor and Firecracker). A stand-in serves its API socket through Serve or
// Handler: every request it receives is validated against the official API definition of
// the hypervisor it imitates, recorded as one JSON line, and answered 400 when it does not
// match (as the real hypervisor would). Tests then compare the recorded sequence with a
// golden file (CompareGolden).
//
// The API definitions are not copied into this repository: they are read at test time
// from the project's shared reference directory, ../shared/reference beside the repository
// root (or $COCOON_API_REFERENCE_DIR). Tests fail, never skip, when it is missing, so a
// stand-in can never silently stop checking the contract.
package apicheck
