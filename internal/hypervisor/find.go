package hypervisor

// Finder is implemented by backends that can find a VM's hypervisor without a recorded PID
// (from their PID file). The engine uses it to see a process that a command launched but
// crashed before recording, so such a VM is listed truthfully and rm can stop it.
type Finder interface {
	// Find returns the VM's live, ownership-checked hypervisor process, if there is one.
	Find(vm VMRef) (Process, bool)
}
