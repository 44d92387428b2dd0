package apicheck

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
)

// Handler wraps h so every request is read whole, checked by c and appended to logPath
// (invalid ones too, with Record.Error). An invalid request is answered 400 with the
// checker's message, shaped like the real hypervisor's error; a valid one reaches h with its
// body restored. A nil h answers 204 No Content, the success answer of both APIs' actions.
// A request that cannot be recorded is answered 500, so the test sees it.
func Handler(c *Checker, logPath string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		path := r.URL.RequestURI()
		checkErr := c.Check(r.Method, path, r.Header, body)
		if err := AppendRecord(logPath, NewRecord(r.Method, path, body, checkErr)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if checkErr != nil {
			c.writeError(w, http.StatusBadRequest, checkErr.Error())
			return
		}
		if h == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Serve serves Handler(c, logPath, h) on ln in a goroutine and returns the server; stop it
// with Close or Shutdown (which also closes ln).
func Serve(ln net.Listener, c *Checker, logPath string, h http.Handler) *http.Server {
	srv := &http.Server{Handler: Handler(c, logPath, h)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("stand-in API server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return srv
}

// writeError answers like the real hypervisor: Firecracker sends {"fault_message": ...},
// Cloud Hypervisor a plain-text reason.
func (c *Checker) writeError(w http.ResponseWriter, status int, msg string) {
	if c.flavor == Firecracker {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"fault_message": msg})
		return
	}
	http.Error(w, msg, status)
}
