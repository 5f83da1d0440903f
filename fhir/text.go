package fhir

import (
	"bytes"
	"unicode/utf8"
)

// checkText refuses a body that is not Unicode text: invalid UTF-8, or a \u
// escape of a lone UTF-16 surrogate ("\ud800" without its pair). Go's JSON
// decoder would replace either with U+FFFD, a silent change of what the client
// sent; FHIR resources are Unicode, so both are a client error naming the byte
// offset where the body stops being text.
func checkText(body []byte) error {
	if !utf8.Valid(body) {
		off := 0
		for off < len(body) {
			r, size := utf8.DecodeRune(body[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return Errorf(Invalid, "", "the body is not valid UTF-8: invalid byte 0x%02x at byte offset %d", body[off], off)
	}
	for i := bytes.IndexByte(body, '\\'); i >= 0 && i+1 < len(body); {
		switch body[i+1] {
		case 'u':
			if r, ok := hex4(body, i+2); ok && r >= 0xD800 && r <= 0xDFFF {
				if r >= 0xDC00 {
					return Errorf(Invalid, "", "the body is not Unicode text: \\u%04x at byte offset %d is a lone low surrogate", r, i)
				}
				low, ok := rune(0), false
				if i+7 < len(body) && body[i+6] == '\\' && body[i+7] == 'u' {
					low, ok = hex4(body, i+8)
				}
				if !ok || low < 0xDC00 || low > 0xDFFF {
					return Errorf(Invalid, "", "the body is not Unicode text: \\u%04x at byte offset %d is a high surrogate without its low surrogate", r, i)
				}
				i += 6 // the pair's second half is checked as its own escape: skip it
			}
			i += 2
		default:
			i += 2 // \\, \" and the one-letter escapes
		}
		next := bytes.IndexByte(body[i:], '\\')
		if next < 0 {
			break
		}
		i += next
	}
	return nil
}

// hex4 reads four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
