package firecracker

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// DebugCommand implements hypervisor.Backend: the firecracker launch line, then the API
// calls Start makes, as curl commands against its socket. Drives are named by their real
// paths (Start's relative links exist only in a VM's run dir).
func (b *Backend) DebugCommand(spec hypervisor.VMSpec) (string, error) {
	if err := b.validate(spec, true); err != nil {
		return "", err
	}
	sock := apiPath(spec.RunDir)
	var out strings.Builder
	out.WriteString("# Terminal 1: Firecracker (its stdin/stdout is the guest's serial console)\n")
	fmt.Fprintf(&out, "rm -f %s\n", hypervisor.ShellQuote(sock))
	out.WriteString(hypervisor.ShellJoin(b.binary, []string{"--api-sock", sock, "--id", spec.ID}, false) + "\n")
	out.WriteString("\n# Terminal 2: configure and boot\n")
	for _, c := range bootCalls(spec, false) {
		body, err := json.Marshal(c.Body)
		if err != nil {
			return "", fmt.Errorf("encode %s %s: %w", c.Method, c.Path, err)
		}
		out.WriteString(hypervisor.ShellJoin("curl", []string{"--unix-socket", sock, "-sS", "-X", c.Method,
			"http://localhost" + c.Path, "-H", "Content-Type: application/json", "-d", string(body)}, false) + "\n")
	}
	return out.String(), nil
}
