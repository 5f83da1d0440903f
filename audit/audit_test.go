package audit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
)

// chain makes n linked AuditEvents, oldest first, as stored bodies.
func chain(t *testing.T, n int) [][]byte {
	t.Helper()
	var out [][]byte
	prev := ""
	for i := 0; i < n; i++ {
		ev := audit.Event(audit.Record{Interaction: "read", Action: "R", Entities: []string{"Patient/p" + string(rune('a'+i))},
			Patient: "Patient/pa", Who: &auth.Principal{Issuer: "https://idp", ClientID: "c", Subject: "s", Roles: []string{"auditor"}},
			Recorded: time.Date(2026, 11, 29, 12, 0, i, 0, time.UTC)})
		ev["id"] = "ev" + string(rune('a'+i))
		h, err := audit.Link(ev, prev)
		if err != nil {
			t.Fatal(err)
		}
		body, err := fhir.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := audit.LastHash(body); got != h {
			t.Fatalf("LastHash %q, want %q", got, h)
		}
		out = append(out, body)
		prev = h
	}
	return out
}

func verify(bodies [][]byte) (int, error) {
	i := 0
	return audit.VerifyChain(func() (string, []byte, bool, error) {
		if i == len(bodies) {
			return "", nil, false, nil
		}
		i++
		return "ev", bodies[i-1], true, nil
	})
}

// TestVerifyChain: an intact chain verifies; a changed, removed or reordered
// event is found at its position.
func TestVerifyChain(t *testing.T) {
	if n, err := verify(chain(t, 4)); err != nil || n != 4 {
		t.Fatalf("intact chain: %d %v", n, err)
	}
	for _, c := range []struct {
		name   string
		tamper func([][]byte) [][]byte
		at     int
		reason string
	}{
		{"changed", func(b [][]byte) [][]byte {
			b[2] = []byte(strings.Replace(string(b[2]), `"action":"R"`, `"action":"D"`, 1))
			return b
		}, 3, "does not match its hash"},
		{"removed", func(b [][]byte) [][]byte { return append(b[:1], b[2:]...) }, 2, "does not follow"},
		{"reordered", func(b [][]byte) [][]byte { b[1], b[2] = b[2], b[1]; return b }, 2, "does not follow"},
	} {
		_, err := verify(c.tamper(chain(t, 4)))
		var br *audit.ChainBreak
		if !errors.As(err, &br) || br.Position != c.at || !strings.Contains(br.Reason, c.reason) {
			t.Errorf("%s: %v, want a break at %d (%s)", c.name, err, c.at, c.reason)
		}
	}
}
