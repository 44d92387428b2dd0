package console

import (
	"os"
	"testing"

	"github.com/cocoonstack/cocoon/internal/console/relay"
)

// VMs started by these tests run their console relay as a re-exec of this test binary.
func TestMain(m *testing.M) {
	relay.Init()
	os.Exit(m.Run())
}
