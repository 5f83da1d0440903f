package hl7v2

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseA01(t *testing.T) {
	m, err := Parse(read(t, "a01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	typ, ev := m.Type()
	pid := m.Segment("PID")
	zu1 := m.Segment("ZU1")
	for _, c := range []struct{ name, got, want string }{
		{"type", typ + "^" + ev, "ADT^A01"},
		{"control id", m.ControlID(), "MSG00001"},
		{"MSH-1", m.Segment("MSH").Value(1, 1), "|"},
		{"MSH-2", m.Segment("MSH").Value(2, 1), `^~\&`},
		{"NHS number", pid.Get(3, 0, 1, 1), "9449305552"},
		{"NHS type", pid.Get(3, 0, 5, 1), "NH"},
		{"verification status", pid.Get(3, 0, 9, 1), "01"},
		{"hospital number", pid.Get(3, 1, 1, 1), "H123456"},
		{"second name repetition", pid.Get(5, 1, 2, 1), "JACK"},
		{"postcode", pid.Value(11, 5), "LS1 1AA"},
		{"ward", m.Segment("PV1").Value(3, 1), "WARD 7"},
		{"PV2-9 by path", m.Get(mustPath(t, "PV2-9")), "20261201"},
		{"Z-segment escapes", zu1.Value(3, 1), "ELEC|TRIC\nLINE TWOA"},
		{"absent", pid.Value(30, 1), ""},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if n := pid.Reps(3); n != 2 {
		t.Errorf("PID-3 repetitions = %d, want 2", n)
	}
	if len(m.Segments) != 6 || m.Segments[5].Name != "ZU1" {
		t.Errorf("segments = %d, want 6 with ZU1 kept last", len(m.Segments))
	}
}

func mustPath(t *testing.T, s string) Path {
	t.Helper()
	p, err := ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLineEnds(t *testing.T) {
	base := string(read(t, "a03.hl7"))
	for name, sep := range map[string]string{"LF": "\n", "CR": "\r", "CRLF": "\r\n"} {
		m, err := Parse([]byte(strings.ReplaceAll(base, "\n", sep)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(m.Segments) != 4 || m.Segment("PV1").Value(36, 1) != "19" {
			t.Errorf("%s: %d segments, PV1-36 %q", name, len(m.Segments), m.Segment("PV1").Value(36, 1))
		}
	}
}

func TestOddSeparators(t *testing.T) {
	m, err := Parse([]byte("MSH#$*!@#PAS#RXX01###20261129##ADT$A08#C1#P#2.4\rPID###9449305552$$$NHS$NH*H1$$$RXX01$PI##O!T!X!S!!F!$ANN@B"))
	if err != nil {
		t.Fatal(err)
	}
	pid := m.Segment("PID")
	if pid.Get(3, 1, 1, 1) != "H1" || pid.Value(5, 1) != "O@X$#" || pid.Value(5, 2) != "ANN" || pid.Get(5, 0, 2, 2) != "B" {
		t.Errorf("values %+v", pid.Values)
	}
}

func TestLatin1(t *testing.T) {
	m, err := Parse([]byte("MSH|^~\\&|A|B|||||ADT^A08|1|P|2.4||||||8859/1\rPID|||9449305552^^^NHS^NH||BRONT\xcb^ANNE\r"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Segment("PID").Value(5, 1); got != "BRONTË" {
		t.Errorf("name %q", got)
	}
}

func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		name, in, loc, reason string
	}{
		{"empty", "\r\n", "message", "empty"},
		{"not HL7", "hello world, this is not HL7", "MSH", "does not start with MSH"},
		{"json", `{"resourceType":"Patient"}`, "MSH", "does not start with MSH"},
		{"truncated MSH", "MSH|^~", "MSH-2", "too short"},
		{"alphanumeric separator", "MSH|^~A&|X", "MSH-2", "punctuation"},
		{"repeated separator", "MSH|^^\\&|X", "MSH-2", "used twice"},
		{"unterminated escape", "MSH|^~\\&|A\rPID|||1||SMITH\\F", "PID-5", "unterminated"},
		{"odd hex", "MSH|^~\\&|A\rPID|||1||\\X4\\", "PID-5", "even"},
		{"bad hex", "MSH|^~\\&|A\rPID|||1||\\XZZ\\", "PID-5", "not hexadecimal"},
		{"bad segment name", "MSH|^~\\&|A\rpid|1", "pid", "segment name"},
		{"two messages", "MSH|^~\\&|A\rMSH|^~\\&|B", "MSH", "second MSH"},
		{"not UTF-8", "MSH|^~\\&|A\rPID|||1||\xff\xfe", "PID-5", "UTF-8"},
		{"long field", "MSH|^~\\&|A\rPID|||" + strings.Repeat("9", 70000), "PID-3", "more than"},
	} {
		_, err := Parse([]byte(c.in))
		var he *Error
		if !errors.As(err, &he) {
			t.Errorf("%s: error %v, want *Error", c.name, err)
			continue
		}
		if he.Location() != c.loc || !strings.Contains(he.Reason, c.reason) {
			t.Errorf("%s: %v, want at %s containing %q", c.name, err, c.loc, c.reason)
		}
	}
}

func TestUnescapeKeepsUnknown(t *testing.T) {
	got, err := Unescape(`a\H\b\N\c\Zfoo\d\E\`, Standard)
	if err != nil || got != `abc\Zfoo\d\` {
		t.Errorf("got %q, %v", got, err)
	}
	for _, s := range []string{"a|b^c~d&e\\f\ng", "plain", ""} {
		back, err := Unescape(Escape(s, Standard), Standard)
		if err != nil || back != s {
			t.Errorf("round trip %q: %q %v", s, back, err)
		}
	}
}

func TestSplitMessages(t *testing.T) {
	msgs, err := SplitMessages(read(t, "batch.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	m, err := Parse(msgs[1])
	if err != nil || m.ControlID() != "B2" || m.Segment("PID").Value(5, 2) != "JANE" {
		t.Errorf("second message: %v %v", m, err)
	}
	stream := append(read(t, "a01.hl7"), read(t, "a03.hl7")...)
	if msgs, err := SplitMessages(stream); err != nil || len(msgs) != 2 {
		t.Errorf("bare stream: %d messages, %v", len(msgs), err)
	}
	if _, err := SplitMessages([]byte("BHS|^~\\&\rMSH|^~\\&|A\rBTS|3\r")); err == nil || !strings.Contains(err.Error(), "batch count") {
		t.Errorf("bad count: %v", err)
	}
	if _, err := SplitMessages([]byte("PID|1\rMSH|^~\\&|A\r")); err == nil {
		t.Error("segment before MSH accepted")
	}
}

func TestParsePath(t *testing.T) {
	for in, want := range map[string]string{"PV2-9": "PV2-9", "ZU1-5.2": "ZU1-5.2", "PID-3.1.2": "PID-3.1.2"} {
		p, err := ParsePath(in)
		if err != nil || p.String() != want {
			t.Errorf("%s: %v %v", in, p, err)
		}
	}
	for _, in := range []string{"", "PV2", "PV2-0", "pv2-9", "PV2-9.1.1.1", "PV2-x"} {
		if _, err := ParsePath(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestACK(t *testing.T) {
	m, err := Parse(read(t, "a01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	ack, err := Parse(ACK(m, AE, &Error{Segment: "PID", Seq: 1, Field: 3, Code: CodeRequiredMissing, Reason: "no NHS number|hospital number"}, "", "A1", now))
	if err != nil {
		t.Fatal(err)
	}
	msh, msa, e := ack.Segment("MSH"), ack.Segment("MSA"), ack.Segment("ERR")
	for _, c := range []struct{ got, want string }{
		{msh.Value(3, 1), "CRS"}, {msh.Value(5, 1), "PAS"}, {msh.Value(6, 1), "RXX01"},
		{msh.Value(9, 1) + msh.Value(9, 2), "ACKA01"}, {msh.Value(10, 1), "A1"}, {msh.Value(12, 1), "2.4"},
		{msa.Value(1, 1), "AE"}, {msa.Value(2, 1), "MSG00001"},
		{e.Value(2, 1) + e.Value(2, 2) + e.Value(2, 3), "PID13"}, {e.Value(3, 1), "101"}, {e.Value(4, 1), "E"},
		{e.Value(8, 1), "no NHS number|hospital number"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if ack := string(ACK(nil, AR, &Error{Code: CodeSegmentSequence, Reason: "x"}, "", "A2", now)); !strings.Contains(ack, "MSA|AR|") {
		t.Errorf("ACK of nothing: %q", ack)
	}
}

// FuzzParse: no input panics; what parses keeps its segment names and its
// values are valid UTF-8.
func FuzzParse(f *testing.F) {
	for _, n := range []string{"a01.hl7", "a03.hl7", "batch.hl7"} {
		f.Add(read(f, n))
	}
	f.Add([]byte("MSH#$*!@#A\rPID#\\X41\\#\\.br\\"))
	f.Add([]byte("MSH|^~\\&#|A\rZU1|\\X\\|\\E"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		for _, s := range m.Segments {
			if !validName(s.Name) {
				t.Fatalf("segment name %q", s.Name)
			}
		}
		_ = ACK(m, AA, nil, "", "1", time.Time{})
		_, _ = SplitMessages(data)
	})
}

// BenchmarkParse parses a typical ITK-style A01 (MB/s and messages/s).
func BenchmarkParse(b *testing.B) {
	data := read(b, "a01.hl7")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
