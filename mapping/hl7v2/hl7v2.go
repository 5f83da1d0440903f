// Package hl7v2 parses HL7 version 2 messages (v2.3–v2.5.1) as NHS trusts send
// them: separators taken from MSH-1 and MSH-2, escape sequences (\F\ \S\ \T\
// \R\ \E\, \Xhh…\ hexadecimal, \.br\ line break), repeated fields, components
// and sub-components, Z-segments kept like any other, CR, LF or CRLF segment
// ends, and files holding a bare stream of messages or FHS/BHS batches.
//
// A parsed value is immutable and holds no global state. Every error is an
// *Error naming the segment and field it is about, as an ERR segment of an
// acknowledgement wants it.
package hl7v2

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Delimiters are a message's separators, from MSH-1 and MSH-2.
type Delimiters struct {
	Field, Component, Repetition, Escape, SubComponent byte
}

// Standard are the delimiters nearly every sender uses: | ^ ~ \ &.
var Standard = Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', SubComponent: '&'}

// Value is one non-empty leaf of a segment: the text (unescaped) of field
// Field (1-based, HL7 numbering), repetition Rep (0-based), component Comp
// and sub-component Sub (both 1-based).
type Value struct {
	Field, Rep, Comp, Sub int
	Text                  string
}

// Segment is one segment: its name (MSH, PID, ZU1 …) and its non-empty values
// in order.
type Segment struct {
	Name   string
	Seq    int // 1-based position among the message's segments of this name
	Values []Value
}

// Message is one parsed message.
type Message struct {
	Delims   Delimiters
	Segments []*Segment
	Raw      string // the message as received, segments joined by CR
}

// Error codes of HL7 table 0357 (message error condition codes), used in ERR-3.
const (
	CodeSegmentSequence  = "100" // segment sequence error
	CodeRequiredMissing  = "101" // required field missing
	CodeDataType         = "102" // data type error
	CodeTableValue       = "103" // table value not found
	CodeUnsupportedType  = "200" // unsupported message type
	CodeUnsupportedEvent = "201" // unsupported event code
	CodeUnknownKey       = "204" // unknown key identifier
	CodeInternal         = "207" // application internal error
)

// Error is a problem with a message, located at a segment and field (Field 0:
// the whole segment; Segment "": the whole message).
type Error struct {
	Segment string
	Seq     int // occurrence of the segment (1-based), 0 when unknown
	Field   int
	Code    string // HL7 table 0357 code
	Reason  string
}

// Location is where the error is, as people write it: "PID-3", "MSH".
func (e *Error) Location() string {
	switch {
	case e.Segment == "":
		return "message"
	case e.Field == 0:
		return e.Segment
	default:
		return e.Segment + "-" + strconv.Itoa(e.Field)
	}
}

func (e *Error) Error() string { return e.Location() + ": " + e.Reason }

func errorf(seg string, seq, field int, code, format string, args ...any) *Error {
	return &Error{Segment: seg, Seq: seq, Field: field, Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Limits bound what Parse accepts. Zero values take the defaults.
type Limits struct {
	MaxField    int // bytes of one field as received (default 65,536)
	MaxSegments int // segments in one message (default 1,000)
}

func (l Limits) orDefault() Limits {
	if l.MaxField <= 0 {
		l.MaxField = 64 << 10
	}
	if l.MaxSegments <= 0 {
		l.MaxSegments = 1000
	}
	return l
}

// Parse parses one message with the default limits.
func Parse(data []byte) (*Message, error) { return ParseLimits(data, Limits{}) }

// ParseLimits parses one message: it must start with MSH; segments end with
// CR, LF or CRLF; blank lines are skipped.
func ParseLimits(data []byte, lim Limits) (*Message, error) {
	lim = lim.orDefault()
	lines := splitSegments(string(data))
	if len(lines) == 0 {
		return nil, errorf("", 0, 0, CodeSegmentSequence, "empty message")
	}
	if len(lines) > lim.MaxSegments {
		return nil, errorf("", 0, 0, CodeSegmentSequence, "more than %d segments", lim.MaxSegments)
	}
	d, err := delimiters(lines[0])
	if err != nil {
		return nil, err
	}
	m := &Message{Delims: d, Segments: make([]*Segment, 0, len(lines)), Raw: strings.Join(lines, "\r")}
	latin1 := false
	seqs := map[string]int{}
	for i, line := range lines {
		if i > 0 && strings.HasPrefix(line, "MSH") {
			return nil, errorf("MSH", 2, 0, CodeSegmentSequence, "a second MSH segment: one message expected")
		}
		s, err := parseSegment(line, d, lim, seqs)
		if err != nil {
			return nil, err
		}
		m.Segments = append(m.Segments, s)
		if i == 0 {
			cs := strings.ToUpper(s.Get(18, 0, 1, 1))
			latin1 = cs == "8859/1" || cs == "ISO-8859-1"
		}
	}
	if err := m.checkText(latin1); err != nil {
		return nil, err
	}
	return m, nil
}

// checkText makes every value valid UTF-8: text declared 8859/1 in MSH-18 is
// converted, other invalid bytes are an error.
func (m *Message) checkText(latin1 bool) error {
	for _, s := range m.Segments {
		for i := range s.Values {
			v := &s.Values[i]
			if utf8.ValidString(v.Text) {
				continue
			}
			if !latin1 {
				return errorf(s.Name, s.Seq, v.Field, CodeDataType, "text is not UTF-8 (MSH-18 does not declare 8859/1)")
			}
			r := make([]rune, 0, len(v.Text))
			for j := 0; j < len(v.Text); j++ {
				r = append(r, rune(v.Text[j]))
			}
			v.Text = string(r)
		}
	}
	return nil
}

func splitSegments(s string) []string {
	var out []string
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		line := s
		if i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if strings.TrimSpace(line) != "" {
			out = append(out, line)
		}
	}
	return out
}

// delimiters reads the separators of a header segment (MSH, FHS or BHS).
func delimiters(line string) (Delimiters, error) {
	name := line
	if len(name) > 3 {
		name = name[:3]
	}
	if name != "MSH" && name != "FHS" && name != "BHS" {
		return Delimiters{}, errorf("MSH", 1, 0, CodeSegmentSequence, "the message does not start with MSH (found %q)", printable(name))
	}
	if len(line) < 8 {
		return Delimiters{}, errorf(name, 1, 2, CodeRequiredMissing, "too short to hold the field separator and the encoding characters")
	}
	d := Delimiters{Field: line[3], Component: line[4], Repetition: line[5], Escape: line[6], SubComponent: line[7]}
	// v2.7 adds a fifth, truncation, character; accept it and ignore it.
	end := 8
	if len(line) > 8 && line[8] != d.Field {
		end = 9
		if len(line) > 9 && line[9] != d.Field {
			return Delimiters{}, errorf(name, 1, 2, CodeDataType, "encoding characters must be 4 (e.g. ^~\\&)")
		}
	}
	seen := map[byte]bool{}
	for _, c := range []byte(line[3:end]) {
		if c < 0x21 || c > 0x7e || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' {
			return Delimiters{}, errorf(name, 1, 2, CodeDataType, "separator %q must be a printable ASCII punctuation character", printable(string(c)))
		}
		if seen[c] {
			return Delimiters{}, errorf(name, 1, 2, CodeDataType, "separator %q is used twice", string(c))
		}
		seen[c] = true
	}
	return d, nil
}

func printable(s string) string {
	if len(s) > 20 {
		s = s[:20]
	}
	return strings.ToValidUTF8(s, "?")
}

func parseSegment(line string, d Delimiters, lim Limits, seqs map[string]int) (*Segment, error) {
	nameEnd := strings.IndexByte(line, d.Field)
	if nameEnd < 0 {
		nameEnd = len(line)
	}
	name := line[:nameEnd]
	if !validName(name) {
		return nil, errorf(printable(name), 0, 0, CodeSegmentSequence, "not a segment name (three letters or digits, starting with a letter)")
	}
	seqs[name]++
	// One allocation per segment: a value per separator at most.
	n := 3
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case d.Field, d.Component, d.Repetition, d.SubComponent:
			n++
		}
	}
	s := &Segment{Name: name, Seq: seqs[name], Values: make([]Value, 0, n)}
	rest := ""
	if nameEnd < len(line) {
		rest = line[nameEnd+1:]
	}
	field := 1
	header := name == "MSH" || name == "FHS" || name == "BHS"
	if header {
		// MSH-1 is the field separator itself, MSH-2 the encoding characters: both literal.
		s.Values = append(s.Values, Value{Field: 1, Comp: 1, Sub: 1, Text: string(d.Field)})
		enc := rest
		if i := strings.IndexByte(rest, d.Field); i >= 0 {
			enc, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		s.Values = append(s.Values, Value{Field: 2, Comp: 1, Sub: 1, Text: enc})
		field = 3
		if rest == "" {
			return s, nil
		}
	}
	for {
		f := rest
		i := strings.IndexByte(rest, d.Field)
		if i >= 0 {
			f, rest = rest[:i], rest[i+1:]
		}
		if len(f) > lim.MaxField {
			return nil, errorf(name, s.Seq, field, CodeDataType, "field is %d bytes, more than the %d allowed", len(f), lim.MaxField)
		}
		if f != "" {
			if err := s.addField(f, field, d); err != nil {
				return nil, err
			}
		}
		if i < 0 {
			break
		}
		field++
	}
	return s, nil
}

func validName(n string) bool {
	if len(n) != 3 || n[0] < 'A' || n[0] > 'Z' {
		return false
	}
	for i := 1; i < 3; i++ {
		c := n[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (s *Segment) addField(f string, field int, d Delimiters) error {
	for rep := 0; ; rep++ {
		r := f
		ri := strings.IndexByte(f, d.Repetition)
		if ri >= 0 {
			r, f = f[:ri], f[ri+1:]
		}
		for comp := 1; ; comp++ {
			c := r
			ci := strings.IndexByte(r, d.Component)
			if ci >= 0 {
				c, r = r[:ci], r[ci+1:]
			}
			for sub := 1; ; sub++ {
				v := c
				si := strings.IndexByte(c, d.SubComponent)
				if si >= 0 {
					v, c = c[:si], c[si+1:]
				}
				if v != "" {
					text, err := Unescape(v, d)
					if err != nil {
						return errorf(s.Name, s.Seq, field, CodeDataType, "%v", err)
					}
					s.Values = append(s.Values, Value{Field: field, Rep: rep, Comp: comp, Sub: sub, Text: text})
				}
				if si < 0 {
					break
				}
			}
			if ci < 0 {
				break
			}
		}
		if ri < 0 {
			return nil
		}
	}
}

// Unescape resolves the escape sequences of one value: \F\ \S\ \T\ \R\ \E\
// become the separators, \Xhh…\ the bytes it spells, \.br\ a line feed; the
// highlighting sequences \H\ and \N\ are dropped, and other sequences (\Cxxyy\,
// \Mxxyyzz\, \Zxx\, formatting) are kept as sent.
func Unescape(v string, d Delimiters) (string, error) {
	if strings.IndexByte(v, d.Escape) < 0 {
		return v, nil
	}
	var b strings.Builder
	b.Grow(len(v))
	for len(v) > 0 {
		i := strings.IndexByte(v, d.Escape)
		if i < 0 {
			b.WriteString(v)
			break
		}
		b.WriteString(v[:i])
		v = v[i+1:]
		j := strings.IndexByte(v, d.Escape)
		if j < 0 {
			return "", fmt.Errorf("unterminated escape sequence %q", printable(string(d.Escape)+v))
		}
		seq := v[:j]
		v = v[j+1:]
		switch {
		case seq == "F":
			b.WriteByte(d.Field)
		case seq == "S":
			b.WriteByte(d.Component)
		case seq == "T":
			b.WriteByte(d.SubComponent)
		case seq == "R":
			b.WriteByte(d.Repetition)
		case seq == "E":
			b.WriteByte(d.Escape)
		case seq == ".br":
			b.WriteByte('\n')
		case seq == "H" || seq == "N":
		case seq == "":
			return "", fmt.Errorf("empty escape sequence")
		case seq[0] == 'X':
			hex := seq[1:]
			if len(hex) == 0 || len(hex)%2 != 0 {
				return "", fmt.Errorf("escape \\X%s\\ needs an even, non-zero number of hex digits", printable(hex))
			}
			for k := 0; k < len(hex); k += 2 {
				n, err := strconv.ParseUint(hex[k:k+2], 16, 8)
				if err != nil {
					return "", fmt.Errorf("escape \\X%s\\ is not hexadecimal", printable(hex))
				}
				b.WriteByte(byte(n))
			}
		default:
			b.WriteByte(d.Escape)
			b.WriteString(seq)
			b.WriteByte(d.Escape)
		}
	}
	return b.String(), nil
}

// Escape is the inverse of Unescape for text written into a message: the
// separators become escape sequences and line breaks \.br\.
func Escape(s string, d Delimiters) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case d.Escape:
			b.WriteString(string(d.Escape) + "E" + string(d.Escape))
		case d.Field:
			b.WriteString(string(d.Escape) + "F" + string(d.Escape))
		case d.Component:
			b.WriteString(string(d.Escape) + "S" + string(d.Escape))
		case d.SubComponent:
			b.WriteString(string(d.Escape) + "T" + string(d.Escape))
		case d.Repetition:
			b.WriteString(string(d.Escape) + "R" + string(d.Escape))
		case '\n':
			b.WriteString(string(d.Escape) + ".br" + string(d.Escape))
		case '\r':
			b.WriteString(string(d.Escape) + "X0D" + string(d.Escape))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Get is the text at field, repetition (0-based), component and sub-component
// (1-based), "" when absent.
func (s *Segment) Get(field, rep, comp, sub int) string {
	if s == nil {
		return ""
	}
	for _, v := range s.Values {
		if v.Field == field && v.Rep == rep && v.Comp == comp && v.Sub == sub {
			return v.Text
		}
	}
	return ""
}

// Value is the first sub-component of component comp of the field's first
// repetition: PID-5.1 is s.Value(5, 1).
func (s *Segment) Value(field, comp int) string { return s.Get(field, 0, comp, 1) }

// Reps is the number of repetitions of a field that hold a value.
func (s *Segment) Reps(field int) int {
	if s == nil {
		return 0
	}
	n := 0
	for _, v := range s.Values {
		if v.Field == field && v.Rep+1 > n {
			n = v.Rep + 1
		}
	}
	return n
}

// Segment is the first segment of that name, nil when absent.
func (m *Message) Segment(name string) *Segment {
	for _, s := range m.Segments {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// All is every segment of that name, in order.
func (m *Message) All(name string) []*Segment {
	var out []*Segment
	for _, s := range m.Segments {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Type is the message type and trigger event of MSH-9 ("ADT", "A01").
func (m *Message) Type() (string, string) {
	h := m.Segment("MSH")
	return h.Value(9, 1), h.Value(9, 2)
}

// ControlID is MSH-10, the sender's unique id of the message.
func (m *Message) ControlID() string { return m.Segment("MSH").Value(10, 1) }

// Path names one value of a message, as trusts write it in configuration:
// "PV2-9", "PID-3.1", "ZU1-5.2.1" (segment-field[.component[.sub-component]]).
type Path struct {
	Segment          string
	Field, Comp, Sub int
}

// ParsePath parses a Path.
func ParsePath(p string) (Path, error) {
	name, rest, ok := strings.Cut(p, "-")
	if !ok || !validName(name) {
		return Path{}, fmt.Errorf("hl7v2 path %q: want SEG-field[.component[.subcomponent]], e.g. PV2-9", p)
	}
	out := Path{Segment: name, Comp: 1, Sub: 1}
	parts := strings.Split(rest, ".")
	if len(parts) > 3 {
		return Path{}, fmt.Errorf("hl7v2 path %q: at most field.component.subcomponent", p)
	}
	for i, s := range parts {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 999 {
			return Path{}, fmt.Errorf("hl7v2 path %q: %q is not a position (1–999)", p, s)
		}
		switch i {
		case 0:
			out.Field = n
		case 1:
			out.Comp = n
		case 2:
			out.Sub = n
		}
	}
	return out, nil
}

func (p Path) String() string {
	s := p.Segment + "-" + strconv.Itoa(p.Field)
	if p.Comp > 1 || p.Sub > 1 {
		s += "." + strconv.Itoa(p.Comp)
	}
	if p.Sub > 1 {
		s += "." + strconv.Itoa(p.Sub)
	}
	return s
}

// Get is the text at path p in the first segment of its name.
func (m *Message) Get(p Path) string { return m.Segment(p.Segment).Get(p.Field, 0, p.Comp, p.Sub) }

// SplitMessages splits a file into its messages: a bare stream of messages, or
// FHS/BHS batches (the batch header and trailer segments are checked and left
// out; a BTS-1 message count that does not match is an error). Each message is
// returned as its own bytes, for Parse.
func SplitMessages(data []byte) ([][]byte, error) {
	var out [][]byte
	var cur []string
	batchCount, inBatch := 0, false
	flush := func() {
		if len(cur) > 0 {
			out = append(out, []byte(strings.Join(cur, "\r")+"\r"))
			cur = nil
		}
	}
	for n, line := range splitSegments(string(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))) {
		name := line
		if len(name) > 3 {
			name = name[:3]
		}
		switch name {
		case "FHS", "FTS":
			flush()
		case "BHS":
			flush()
			inBatch, batchCount = true, len(out)
		case "BTS":
			flush()
			if inBatch {
				d := Standard
				if len(line) > 3 {
					d.Field = line[3]
				}
				fields := strings.Split(line, string(d.Field))
				if len(fields) > 1 && fields[1] != "" {
					want, err := strconv.Atoi(fields[1])
					if err != nil || want != len(out)-batchCount {
						return nil, errorf("BTS", 1, 1, CodeSegmentSequence, "batch count %q does not match the %d messages in the batch", printable(fields[1]), len(out)-batchCount)
					}
				}
			}
			inBatch = false
		case "MSH":
			flush()
			cur = append(cur, line)
		default:
			if len(cur) == 0 {
				return nil, errorf(printable(name), 0, 0, CodeSegmentSequence, "segment %d comes before any MSH", n+1)
			}
			cur = append(cur, line)
		}
	}
	flush()
	return out, nil
}
