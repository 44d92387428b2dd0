// Package progress shows byte counts of concurrent transfers on one terminal line.
//
// It draws only on a terminal: New returns nil for anything else (pipes, files, logs), and every
// method works on a nil *Bar or *Item, so callers never branch on whether progress is shown.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/go-units"
	"golang.org/x/term"
)

// redrawEvery limits redraws so a fast transfer does not flood the terminal.
const redrawEvery = 100 * time.Millisecond

// Bar is one status line for a set of transfers.
type Bar struct {
	w     io.Writer
	label string

	mu    sync.Mutex
	items []*Item
	last  time.Time
}

// Item is one transfer on a Bar.
type Item struct {
	bar   *Bar
	name  string
	total int64
	n     atomic.Int64
	done  atomic.Bool
}

// New returns a Bar writing to w, or nil when w is not a terminal.
func New(w io.Writer, label string) *Bar {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &Bar{w: w, label: label}
}

// Add starts tracking a transfer; total <= 0 means unknown.
func (b *Bar) Add(name string, total int64) *Item {
	if b == nil {
		return nil
	}
	it := &Item{bar: b, name: name, total: total}
	b.mu.Lock()
	b.items = append(b.items, it)
	b.mu.Unlock()
	b.draw(true)
	return it
}

// Wrap counts the bytes read through r.
func (it *Item) Wrap(r io.Reader) io.Reader {
	if it == nil {
		return r
	}
	return &countingReader{r: r, it: it}
}

// Done marks the transfer finished.
func (it *Item) Done() {
	if it == nil {
		return
	}
	it.done.Store(true)
	it.bar.draw(true)
}

// Close draws the final state and ends the line.
func (b *Bar) Close() {
	if b == nil {
		return
	}
	b.draw(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintln(b.w)
}

type countingReader struct {
	r  io.Reader
	it *Item
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.it.n.Add(int64(n))
	c.it.bar.draw(false)
	return n, err
}

func (b *Bar) draw(force bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(b.last) < redrawEvery {
		return
	}
	b.last = now
	var parts []string
	done := 0
	for _, it := range b.items {
		if it.done.Load() {
			done++
			continue
		}
		s := it.name + " " + units.HumanSize(float64(it.n.Load()))
		if it.total > 0 {
			s += "/" + units.HumanSize(float64(it.total))
		}
		parts = append(parts, s)
	}
	line := fmt.Sprintf("%s: %d/%d done", b.label, done, len(b.items))
	if len(parts) > 0 {
		line += "  " + strings.Join(parts, "  ")
	}
	fmt.Fprint(b.w, "\r\x1b[K"+line)
}
