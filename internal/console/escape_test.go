package console

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseEscape(t *testing.T) {
	good := map[string]byte{"^]": 0x1d, "^x": 0x18, "^X": 0x18, "^[": 0x1b, "^_": 0x1f, "~": '~', "e": 'e', "^": '^'}
	for in, want := range good {
		if got, err := ParseEscape(in); err != nil || got != want {
			t.Errorf("ParseEscape(%q) = %#x, %v; want %#x", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":     "single character or ^X",
		"ab":   "single character or ^X",
		"^1":   "after ^ use a letter",
		"^@":   "NUL",
		"^M":   "CR or LF",
		"^j":   "CR or LF",
		"\n":   "CR or LF",
		"^?":   "DEL",
		"\x7f": "DEL",
		"é":    "ASCII",
		"\xff": "ASCII",
	}
	for in, want := range bad {
		if _, err := ParseEscape(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseEscape(%q) error %v, want one mentioning %q", in, err, want)
		}
	}
}

func TestEscapeName(t *testing.T) {
	for c, want := range map[byte]string{0x1d: "^]", 0x18: "^X", '~': "~"} {
		if got := EscapeName(c); got != want {
			t.Errorf("EscapeName(%#x) = %q, want %q", c, got, want)
		}
	}
}

func send(s string) step { return step{act: actSend, data: []byte(s)} }

func TestEscaperFindsSequencesAnywhere(t *testing.T) {
	help, detach := step{act: actHelp}, step{act: actDetach}
	cases := []struct {
		name   string
		esc    byte
		chunks []string
		want   []step
	}{
		{"detach at session start", 0x1d, []string{"\x1d."}, []step{detach}},
		{"detach after CR", 0x1d, []string{"ls\r\x1d.junk"}, []step{send("ls\r"), detach}},
		{"detach after LF", '~', []string{"ls\n~."}, []step{send("ls\n"), detach}},
		{"split across reads", '~', []string{"ls\r~", ".x"}, []step{send("ls\r"), detach}},
		{"mid-line", '~', []string{"a~.b"}, []step{send("a"), detach}},
		// A busybox shell asks for the cursor position after Enter: the terminal's answer
		// arrives before the user's ^].
		{"after a cursor position report", 0x1d, []string{"\r", "\x1b[24;1R", "\x1d", "."}, []step{send("\r"), send("\x1b[24;1R"), detach}},
		{"help then detach", '~', []string{"~?~."}, []step{help, detach}},
		{"double escape sends one", '~', []string{"~~.\r"}, []step{send("~.\r")}},
		{"escape held across reads then data", 0x1d, []string{"a\x1d", "b"}, []step{send("a"), send("\x1db")}},
		{"unknown follower passes both", '~', []string{"~x"}, []step{send("~x")}},
	}
	for _, c := range cases {
		e := newEscaper(c.esc)
		var got []step
		for _, chunk := range c.chunks {
			got = append(got, e.feed([]byte(chunk))...)
			if len(got) > 0 && got[len(got)-1].act == actDetach {
				break
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}
