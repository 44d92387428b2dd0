package cloudhv

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor/rest"
)

// snapshotTimeout bounds vm.snapshot and vm.restore, which are never retried (spec §9.3).
const snapshotTimeout = 10 * time.Minute

// api is the REST API of one VM's cloud-hypervisor.
type api struct{ c *rest.Client }

func newAPI(runDir string) api { return api{rest.New(apiPath(runDir), "/api/v1")} }

// vmInfo is the part of GET vm.info this backend reads.
type vmInfo struct {
	State  string `json:"state"`
	Config struct {
		Payload struct {
			Firmware string `json:"firmware"`
			Kernel   string `json:"kernel"`
		} `json:"payload"`
		Console struct {
			Mode string `json:"mode"`
			File string `json:"file"`
		} `json:"console"`
		Net []struct {
			ID string `json:"id"`
		} `json:"net"`
	} `json:"config"`
}

// ready reports whether the API socket accepts connections. It sends no request, so the
// recorded request sequences of a launch do not depend on how often it was polled.
func (a api) ready(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", a.c.Socket())
	if err != nil {
		return err
	}
	return conn.Close()
}

func (a api) info(ctx context.Context) (vmInfo, error) {
	var v vmInfo
	err := a.c.Do(ctx, rest.Call{Method: http.MethodGet, Path: "/vm.info", Out: &v, OK: []int{http.StatusOK}})
	return v, err
}

// put is an action or device call: 204 (or 200 with a PciDeviceInfo body) is success.
func (a api) put(ctx context.Context, path string, body any) error {
	return a.c.Do(ctx, rest.Call{Method: http.MethodPut, Path: path, Body: body})
}

// once is a call that must not be repeated (snapshot, restore).
func (a api) once(ctx context.Context, path string, body any) error {
	return a.c.Do(ctx, rest.Call{Method: http.MethodPut, Path: path, Body: body, Once: true, Timeout: snapshotTimeout,
		OK: []int{http.StatusNoContent, http.StatusOK}})
}
