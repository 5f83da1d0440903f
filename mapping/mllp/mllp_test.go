package mllp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"crs/mapping/adt"
	"crs/mapping/hl7v2"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// start serves h on 127.0.0.1 and returns the address.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{c: c, r: bufio.NewReader(c)}
}

func (cl *client) send(t *testing.T, msg []byte) *hl7v2.Message {
	t.Helper()
	if err := WriteFrame(cl.c, msg); err != nil {
		t.Fatal(err)
	}
	return cl.ack(t)
}

func (cl *client) ack(t *testing.T) *hl7v2.Message {
	t.Helper()
	b, err := ReadFrame(cl.r, DefaultMaxMessage, nil)
	if err != nil {
		t.Fatalf("read ACK: %v", err)
	}
	m, err := hl7v2.Parse(b)
	if err != nil {
		t.Fatalf("ACK %q: %v", b, err)
	}
	return m
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../adt/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestADTOverTCP: admit, discharge, a duplicate and a refused message over
// one real connection, each acknowledged in order with the right code.
func TestADTOverTCP(t *testing.T) {
	env := mappingtest.New(t, "../adt/testdata/fixtures.json")
	im := &adt.Importer{Engine: env.Engine, Config: adt.Config{Facilities: map[string]string{"RR801": "RR8"}, Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
	addr := start(t, &Server{Handler: func(ctx context.Context, msg []byte) []byte { ack, _ := im.Process(ctx, msg); return ack }})
	cl := dial(t, addr)
	for _, c := range []struct {
		msg        []byte
		code, ctl  string
		errPresent bool
	}{
		{read(t, "a01.hl7"), "AA", "C001", false},
		{read(t, "a03.hl7"), "AA", "C003", false},
		{read(t, "a03.hl7"), "AA", "C003", false}, // duplicate: acknowledged again
		{bytes.Replace(read(t, "a01.hl7"), []byte("ADT^A01^ADT_A01|C001"), []byte("ADT^A99|C009"), 1), "AR", "C009", true},
		{bytes.Replace(read(t, "a08.hl7"), []byte("9449305552"), []byte("9449305553"), 1), "AE", "C005", true},
		{[]byte("this is not HL7"), "AR", "", true},
	} {
		ack := cl.send(t, c.msg)
		msa := ack.Segment("MSA")
		if msa.Value(1, 1) != c.code || msa.Value(2, 1) != c.ctl || (ack.Segment("ERR") != nil) != c.errPresent {
			t.Errorf("ACK %q, want %s for %s", ack.Raw, c.code, c.ctl)
		}
	}
	encs := env.Search(t, "Encounter", "_id=bob-acute")
	if len(encs) != 1 || encs[0]["status"] != "finished" || encs[0]["meta"].(map[string]any)["versionId"] != "3" {
		t.Errorf("Encounter after A01, A03, A03 again: %s", mappingtest.JSON(encs))
	}
}

func echo(ctx context.Context, msg []byte) []byte {
	m, err := hl7v2.Parse(msg)
	if err != nil {
		var he *hl7v2.Error
		errors.As(err, &he)
		return hl7v2.ACK(nil, hl7v2.AR, he, "", "A", time.Now())
	}
	return hl7v2.ACK(m, hl7v2.AA, nil, "", "A", time.Now())
}

const tiny = "MSH|^~\\&|PAS|RR801|CRS|CRS|20261129||ADT^A08|X1|P|2.4\rPID|||9449305552^^^NHS^NH\r"

func TestBadClients(t *testing.T) {
	s := &Server{Handler: echo, MaxMessage: 4096, ReadTimeout: 300 * time.Millisecond, IdleTimeout: 2 * time.Second, MaxConns: 4}
	addr := start(t, s)

	t.Run("too large", func(t *testing.T) {
		cl := dial(t, addr)
		big := append([]byte(tiny), bytes.Repeat([]byte("ZZ1|"+strings.Repeat("x", 100)+"\r"), 100)...)
		WriteFrame(cl.c, big)
		if ack := cl.ack(t); ack.Segment("MSA").Value(1, 1) != "AR" || !strings.Contains(ack.Segment("ERR").Value(8, 1), "exceeds 4096") {
			t.Errorf("ACK %q", ack.Raw)
		}
		if _, err := cl.r.ReadByte(); err == nil {
			t.Error("connection kept open after an oversized message")
		}
	})
	t.Run("broken frame", func(t *testing.T) {
		cl := dial(t, addr)
		cl.c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		if ack := cl.ack(t); ack.Segment("MSA").Value(1, 1) != "AR" {
			t.Errorf("ACK %q", ack.Raw)
		}
	})
	t.Run("slow client", func(t *testing.T) {
		cl := dial(t, addr)
		cl.c.Write([]byte{StartBlock})
		cl.c.Write([]byte("MSH|^~\\&|"))
		// Nothing more: the server gives up after ReadTimeout and closes.
		start := time.Now()
		if _, err := cl.r.ReadByte(); err == nil {
			t.Error("the server answered half a message")
		}
		if time.Since(start) > 5*time.Second {
			t.Error("the slow client held its connection past the read timeout")
		}
	})
	t.Run("disconnect mid-message, others still served", func(t *testing.T) {
		cl := dial(t, addr)
		cl.c.Write([]byte{StartBlock})
		cl.c.Write([]byte(tiny[:20]))
		cl.c.Close()
		other := dial(t, addr)
		if ack := other.send(t, []byte(tiny)); ack.Segment("MSA").Value(1, 1) != "AA" {
			t.Errorf("ACK %q", ack.Raw)
		}
	})
	t.Run("many messages in order on one connection", func(t *testing.T) {
		cl := dial(t, addr)
		for i := 0; i < 20; i++ {
			msg := strings.Replace(tiny, "X1", "X1-"+string(rune('a'+i)), 1)
			if ack := cl.send(t, []byte(msg)); ack.Segment("MSA").Value(2, 1) != "X1-"+string(rune('a'+i)) {
				t.Fatalf("ACK %d out of order: %q", i, ack.Raw)
			}
		}
	})
	t.Run("flood of connections", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		served := 0
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				WriteFrame(c, []byte(tiny))
				if _, err := ReadFrame(bufio.NewReader(c), DefaultMaxMessage, nil); err == nil {
					mu.Lock()
					served++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if served == 0 {
			t.Error("no connection of the flood was served")
		}
		// The listener still serves after the flood, once it has seen the
		// flood's connections close (until then it may still be at its limit).
		var last string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				WriteFrame(c, []byte(tiny))
				raw, err := ReadFrame(bufio.NewReader(c), DefaultMaxMessage, nil)
				c.Close()
				last = fmt.Sprintf("%q %v", raw, err)
				if err == nil && strings.Contains(string(raw), "MSA|AA") {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the flood the listener does not serve: %s", last)
			}
		}
	})
}

func TestReadFrame(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     string
		err      error
	}{
		{"one", "\x0bMSH|x\x1c\r", "MSH|x", nil},
		{"whitespace before", "\r\n\x0bA\x1c\r", "A", nil},
		{"garbage before", "x\x0bA\x1c\r", "", ErrFraming},
		{"no CR after end", "\x0bA\x1cB", "", ErrFraming},
		{"start inside", "\x0bA\x0bB\x1c\r", "", ErrFraming},
		{"truncated", "\x0bMSH|", "", io.ErrUnexpectedEOF},
		{"too large", "\x0b" + strings.Repeat("a", 11) + "\x1c\r", "", ErrTooLarge},
		{"at the limit", "\x0b" + strings.Repeat("a", 10) + "\x1c\r", strings.Repeat("a", 10), nil},
		{"empty", "", "", io.EOF},
	} {
		got, err := ReadFrame(bufio.NewReader(strings.NewReader(c.in)), 10, nil)
		if !errors.Is(err, c.err) || string(got) != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, err, c.want, c.err)
		}
	}
}

// FuzzReadFrame: no input panics or returns more than the limit; what is
// read back from WriteFrame is what was written.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("\x0bMSH|^~\\&|A\x1c\r"), []byte("MSH"))
	f.Add([]byte("\r\n\x0b\x1c\r\x0b"), []byte(""))
	f.Add([]byte("\x0b\x0b\x1c"), []byte("a\x1cb"))
	f.Fuzz(func(t *testing.T, stream, msg []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(stream), 16)
		for {
			m, err := ReadFrame(r, 64, nil)
			if err != nil {
				break
			}
			if len(m) > 64 {
				t.Fatalf("%d bytes past the limit", len(m))
			}
		}
		if bytes.IndexByte(msg, EndBlock) >= 0 || bytes.IndexByte(msg, StartBlock) >= 0 || len(msg) > 64 {
			return
		}
		var buf bytes.Buffer
		WriteFrame(&buf, msg)
		got, err := ReadFrame(bufio.NewReader(&buf), 64, nil)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round trip %q: %q %v", msg, got, err)
		}
	})
}

// nhsNumber is a valid test NHS number (999 prefix) for i, a different one
// for each i below 500,000: of the serials 2i and 2i+1 (whose check sums
// differ by 2, so at most one of them has no check digit) the first valid.
func nhsNumber(i int) string {
	for n := 2 * i; ; n++ {
		s := fmt.Sprintf("999%06d", n%1000000)
		sum := 0
		for k := 0; k < 9; k++ {
			sum += int(s[k]-'0') * (10 - k)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check != 10 {
			return s + string(rune('0'+check))
		}
	}
}
