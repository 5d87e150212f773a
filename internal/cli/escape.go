package cli

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Dead letters carry bytes anybody who can produce to a source topic
// chose: keys, error messages, header keys and values. Printed raw, a
// terminal escape sequence among them would reach the operator's terminal
// (retitle it, rewrite what the screen shows, on some terminals answer
// back). printable and safeJSON escape what a terminal acts on.

// unsafeRune reports whether r is a control character (C0, DEL, C1) or a
// bidirectional-text control (which reorders what the screen shows).
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// printable returns s with control characters escaped as \xNN or \uNNNN,
// and bytes that are not UTF-8 as \xNN, for text output.
func printable(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || unsafeRune(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// safeJSON escapes, in JSON that encoding/json wrote, the control
// characters it leaves as they are (DEL, C1, bidirectional controls;
// it escapes the C0 ones itself). They can only sit inside strings, where
// \uNNNN means the same character.
func safeJSON(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r >= 0x20 && unsafeRune(r) {
			if out == nil {
				out = append(make([]byte, 0, len(b)+16), b[:i]...)
			}
			out = fmt.Appendf(out, `\u%04x`, r)
		} else if out != nil {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	if out == nil {
		return b
	}
	return out
}
