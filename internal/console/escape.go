package console

import (
	"fmt"
	"unicode/utf8"
)

// DefaultEscape is ^] (GS), as in telnet and virsh console.
const DefaultEscape byte = 0x1d

// ParseEscape reads --escape-char: one ASCII character ("~") or caret notation ("^]", "^x").
func ParseEscape(s string) (byte, error) {
	var c byte
	switch {
	case len(s) == 2 && s[0] == '^':
		switch x := s[1]; {
		case x >= '@' && x <= '_':
			c = x - '@'
		case x >= 'a' && x <= 'z':
			c = x - 'a' + 1
		case x == '?':
			c = 0x7f
		default:
			return 0, fmt.Errorf("escape-char %q: after ^ use a letter or one of @ [ \\ ] ^ _", s)
		}
	case len(s) == 1:
		c = s[0]
	case utf8.RuneCountInString(s) == 1:
		return 0, fmt.Errorf("escape-char must be an ASCII character, got %q", s)
	default:
		return 0, fmt.Errorf("escape-char must be a single character or ^X caret notation, got %q", s)
	}
	switch {
	case c == 0:
		return 0, fmt.Errorf("escape-char cannot be NUL (^@): pick another, e.g. ^] or ~")
	case c == '\r' || c == '\n':
		return 0, fmt.Errorf("escape-char cannot be CR or LF (^M, ^J): Enter must reach the guest")
	case c == 0x7f:
		return 0, fmt.Errorf("escape-char cannot be DEL (^?): pick another, e.g. ^] or ~")
	case c >= 0x80:
		return 0, fmt.Errorf("escape-char must be an ASCII character, got %q", s)
	}
	return c, nil
}

// EscapeName shows an escape character the way users type it: "^]" or "~".
func EscapeName(c byte) string {
	if c < 0x20 {
		return "^" + string(rune(c+'@'))
	}
	return string(rune(c))
}

type action int

const (
	actSend action = iota
	actHelp
	actDetach
)

type step struct {
	act  action
	data []byte // for actSend
}

// escaper finds escape sequences anywhere in the input stream, as the original does. Only at
// a line start (like ssh's "~.") would miss them in a real terminal: a guest shell that asks
// the terminal for the cursor position (ESC[6n) gets the answer (ESC[row;colR) as input right
// after Enter, so the line no longer starts where the user thinks it does.
type escaper struct {
	esc     byte
	pending bool // the last byte was the escape character
}

func newEscaper(esc byte) *escaper { return &escaper{esc: esc} }

// feed turns one chunk of input into bytes for the guest and local actions, in order.
// Processing stops at a detach.
func (e *escaper) feed(p []byte) []step {
	var steps []step
	var send []byte
	flush := func() {
		if len(send) > 0 {
			steps = append(steps, step{act: actSend, data: send})
			send = nil
		}
	}
	for _, c := range p {
		if e.pending {
			e.pending = false
			switch c {
			case '.':
				flush()
				return append(steps, step{act: actDetach})
			case '?':
				flush()
				steps = append(steps, step{act: actHelp})
				continue
			case e.esc:
				send = append(send, c) // the escape character twice sends it once
				continue
			default:
				send = append(send, e.esc) // not an escape after all: pass both through
			}
		} else if c == e.esc {
			e.pending = true
			continue
		}
		send = append(send, c)
	}
	flush()
	return steps
}

func helpText(esc byte) string {
	n := EscapeName(esc)
	return "\r\nSupported escape sequences:\r\n" +
		"  " + n + ".  disconnect (the VM keeps running)\r\n" +
		"  " + n + "?  this message\r\n" +
		"  " + n + n + " send the escape character itself\r\n"
}
