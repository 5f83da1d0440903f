package audit

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestJournalExtendsAhead: while entries wait for their materialisation, the
// file is preallocated further ahead of the lines in the background (so that
// no fdatasync has to commit a new file size), and every acknowledged entry is
// there, once and in order, at the next Open.
func TestJournalExtendsAhead(t *testing.T) {
	defer func(n int64) { journalSize = n }(journalSize)
	journalSize = 4096
	path := filepath.Join(t.TempDir(), "j")
	j, _, err := OpenJournal(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 150
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := Entry{ID: fmt.Sprintf("g%d-%d", g, i), Recorded: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Canonical: []byte(`{"action":"R","resourceType":"AuditEvent"}`)}
				if err := j.Append(e); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	j.mu.Lock()
	off, size := j.off, j.size
	j.mu.Unlock()
	if off > size || size <= 4096 {
		t.Errorf("preallocated to %d with lines up to %d: the lines passed the preallocated end", size, off)
	}
	j.Close()

	j, n, err := OpenJournal(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	got := j.Take(1 << 20)
	seen := map[string]int{}
	for _, e := range got {
		var g, i int
		if _, err := fmt.Sscanf(e.ID, "g%d-%d", &g, &i); err != nil {
			t.Fatalf("entry %q", e.ID)
		}
		if last, ok := seen[fmt.Sprint(g)]; ok && i != last+1 {
			t.Fatalf("goroutine %d: entry %d after %d", g, i, last)
		}
		seen[fmt.Sprint(g)] = i
	}
	if n != goroutines*each || len(got) != n {
		t.Fatalf("recovered %d entries (%d taken), want %d", n, len(got), goroutines*each)
	}
}
