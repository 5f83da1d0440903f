package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"crs/audit"
)

func entry(id string) audit.Entry {
	return audit.Entry{ID: id, Recorded: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Canonical: []byte(`{"action":"R","resourceType":"AuditEvent"}`)}
}

// TestJournalRecovers: entries appended (durable) and not reported
// materialised are there at the next Open, in order; a torn last line is
// dropped and new entries follow the good ones.
func TestJournalRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, n, err := audit.OpenJournal(path, 0)
	if err != nil || n != 0 {
		t.Fatalf("open: %d %v", n, err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := j.Append(entry(id)); err != nil {
			t.Fatal(err)
		}
	}
	if got := j.Take(1); len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("take: %+v", got)
	}
	if err := j.Materialised(1); err != nil {
		t.Fatal(err)
	}
	j.Close()
	// A crash in the middle of a write leaves half a line.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := bytes.IndexByte(data, 0)
	if end < 0 || len(data) < 1<<20 {
		t.Fatalf("the journal is not preallocated (%d bytes, data up to %d)", len(data), end)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(`0badc0de 0000000000000001 {"id":"torn","t":"2026-11-29T12:00:00Z","c":{"act`), int64(end))
	f.Close()

	j, n, err = audit.OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Materialised is not durable in the journal (the store is the record of
	// that): all three come back, and the materialiser skips what it stored.
	if n != 3 || j.Recovered(5) != 3 {
		t.Fatalf("recovered %d entries, want 3", n)
	}
	if err := j.Append(entry("d")); err != nil {
		t.Fatal(err)
	}
	var ids string
	for _, e := range j.Take(10) {
		ids += e.ID
	}
	if ids != "abcd" {
		t.Fatalf("after recovery: %q, want abcd", ids)
	}
	j.Close()
	j, n, err = audit.OpenJournal(path, 0)
	if err != nil || n != 4 {
		t.Fatalf("reopen after a torn tail: %d %v", n, err)
	}
	j.Close()
}

// TestJournalFull: past its bound, with no wait for room, Append refuses at
// once.
func TestJournalFull(t *testing.T) {
	j, _, err := audit.OpenJournal(filepath.Join(t.TempDir(), "j"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.SetFullWait(0)
	for _, id := range []string{"a", "b"} {
		if err := j.Append(entry(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Append(entry("c")); !errors.Is(err, audit.ErrJournalFull) {
		t.Fatalf("third append: %v, want ErrJournalFull", err)
	}
	if d := j.Depth(); d != 2 {
		t.Fatalf("depth %d", d)
	}
	j.Materialised(len(j.Take(2)))
	if err := j.Append(entry("c")); err != nil {
		t.Fatalf("after materialising: %v", err)
	}
}

// TestJournalWraps: once everything written is materialised, new lines go to
// the start of the file, and the older lines after them are not taken for
// entries at the next Open.
func TestJournalWraps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, err := audit.OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old1", "old2", "old3"} {
		if err := j.Append(entry(id)); err != nil {
			t.Fatal(err)
		}
	}
	j.Materialised(len(j.Take(10)))
	if err := j.Append(entry("new1")); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, n, err := audit.OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	got := j.Take(10)
	if n != 1 || len(got) != 1 || got[0].ID != "new1" {
		t.Fatalf("after a wrap: %d entries %+v, want only new1", n, got)
	}
}

// TestJournalConcurrentAppends: entries appended from many goroutines, with
// fdatasyncs overlapping, are all there at the next Open, each once.
func TestJournalConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, err := audit.OpenJournal(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if err := j.Append(entry(id)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	if got := len(j.Take(1 << 20)); got != 800 {
		t.Errorf("%d entries ready, want 800", got)
	}
	j.Close()
	j, n, err := audit.OpenJournal(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	seen := map[string]bool{}
	for _, e := range j.Take(1 << 20) {
		if seen[e.ID] {
			t.Fatalf("%s twice", e.ID)
		}
		seen[e.ID] = true
	}
	if n != 800 || len(seen) != len(acked) {
		t.Fatalf("recovered %d (%d distinct), want the %d acknowledged", n, len(seen), len(acked))
	}
}

// TestJournalFullWaits: an Append in a full journal waits for the
// materialiser to make room (back-pressure) instead of refusing, and refuses
// with ErrJournalFull only once its wait has passed with no room made.
func TestJournalFullWaits(t *testing.T) {
	j, _, err := audit.OpenJournal(filepath.Join(t.TempDir(), "j"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.SetFullWait(10 * time.Second)
	for _, id := range []string{"a", "b"} {
		if err := j.Append(entry(id)); err != nil {
			t.Fatal(err)
		}
	}
	appended := make(chan error, 1)
	go func() { appended <- j.Append(entry("c")) }()
	select {
	case err := <-appended:
		t.Fatalf("append into a full journal returned %v before room was made", err)
	case <-time.After(100 * time.Millisecond):
	}
	j.Materialised(len(j.Take(1)))
	select {
	case err := <-appended:
		if err != nil {
			t.Fatalf("append after room was made: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("append still waiting after room was made")
	}
	if d := j.Depth(); d != 2 {
		t.Fatalf("depth %d, want 2", d)
	}

	j.SetFullWait(50 * time.Millisecond)
	start := time.Now()
	if err := j.Append(entry("d")); !errors.Is(err, audit.ErrJournalFull) {
		t.Fatalf("append with no room made: %v, want ErrJournalFull", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("refused after %v, before its wait", waited)
	}
}
