package view

// Event is one line of `vm status --event --format json`.
type Event struct {
	Event string `json:"event"` // ADDED | MODIFIED | DELETED
	VM    VM     `json:"vm"`    // for DELETED, the last object seen
}
