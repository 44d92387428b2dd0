package store

import (
	"crypto/rand"
	"testing"
)

func TestIDShapes(t *testing.T) {
	id := rand.Text()
	for s, want := range map[string]bool{id: true, "oppdgdpsmdzn3xhfzy6wogtvtz": true, "OPPDGDPSMDZN3XHFZY6WOGTVT": false,
		"OPPDGDPSMDZN3XHFZY6WOGTVT1": false, "OPPDGDPSMDZN3XHFZY6WOGTV-Z": false, "web": false} {
		if LooksLikeID(s) != want {
			t.Errorf("LooksLikeID(%q) != %v", s, want)
		}
	}
	ids := map[string]bool{"OPPDGDPSMDZN3XHFZY6WOGTVTZ": true}
	for name, want := range map[string]string{"OPPDGDPSMDZN3XHFZY6WOGTVTZ": "OPPDGDPSMDZN3XHFZY6WOGTVTZ", "opp": "OPPDGDPSMDZN3XHFZY6WOGTVTZ",
		"OP": "", "opq": "", "oppdgd-x": ""} {
		if got := ShadowedID(name, ids); got != want {
			t.Errorf("ShadowedID(%q) = %q, want %q", name, got, want)
		}
	}
}
