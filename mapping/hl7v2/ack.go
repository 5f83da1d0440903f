package hl7v2

import (
	"strings"
	"time"
)

// Acknowledgement codes of MSA-1 (original mode).
const (
	AA = "AA" // accepted: the message was stored (or had been already)
	AE = "AE" // error: the message was understood but could not be applied
	AR = "AR" // rejected: not accepted at all (bad MSH, unknown type, not allowed)
)

// ACK builds the acknowledgement of a message: MSH answering the sender
// (sending and receiving application and facility swapped, the same version),
// MSA with the code and the message's control id, and, when err is not nil,
// ERR naming the segment and field (ERR-2), the table 0357 code (ERR-3) and
// the reason (ERR-8). MSA-3 carries the error, or else note (a warning with
// an accepted message; "" for none). m may be nil when the message could not
// be parsed; the ACK then answers with control id "" as HL7 allows.
func ACK(m *Message, code string, err *Error, note, controlID string, now time.Time) []byte {
	d := Standard
	var h *Segment
	if m != nil {
		d = m.Delims
		h = m.Segment("MSH")
	}
	e := func(s string) string { return Escape(s, d) }
	f := string(d.Field)
	enc := string([]byte{d.Component, d.Repetition, d.Escape, d.SubComponent})
	trigger := h.Value(9, 2)
	version := h.Value(12, 1)
	if version == "" {
		version = "2.4"
	}
	msh := []string{"MSH", enc, e(h.Value(5, 1)), e(h.Value(6, 1)), e(h.Value(3, 1)), e(h.Value(4, 1)),
		now.UTC().Format("20060102150405"), "", "ACK" + string(d.Component) + e(trigger) + string(d.Component) + "ACK",
		e(controlID), "P", e(version)}
	var b strings.Builder
	b.WriteString(strings.Join(msh, f))
	b.WriteString("\r")
	ctl := ""
	if m != nil {
		ctl = m.ControlID()
	}
	b.WriteString("MSA" + f + code + f + e(ctl))
	if err != nil {
		b.WriteString(f + e(err.Error()))
	} else if note != "" {
		b.WriteString(f + e(note))
	}
	b.WriteString("\r")
	if err != nil {
		loc := ""
		if err.Segment != "" {
			seq := err.Seq
			if seq == 0 {
				seq = 1
			}
			loc = e(err.Segment) + string(d.Component) + itoa(seq)
			if err.Field > 0 {
				loc += string(d.Component) + itoa(err.Field)
			}
		}
		c := err.Code
		if c == "" {
			c = CodeInternal
		}
		b.WriteString("ERR" + f + f + loc + f + c + string(d.Component) + string(d.Component) + "HL70357" + f + "E" + f + f + f + f + e(err.Reason) + "\r")
	}
	return []byte(b.String())
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}
