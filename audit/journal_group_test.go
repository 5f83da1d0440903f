package audit_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"crs/audit"
)

// TestJournalGroupCommits: callers that append again as soon as they are
// answered share fdatasyncs: 8 of them, 100 appends each, take well under
// one fdatasync per two appends (two flushes in flight, as before, split
// them into cohorts of about two). Every append is still durable before it
// returns (TestJournalConcurrentAppends reopens the file to check).
func TestJournalGroupCommits(t *testing.T) {
	j, _, err := audit.OpenJournal(filepath.Join(t.TempDir(), "j"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const callers, each = 8, 100
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := j.Append(entry(fmt.Sprintf("g%d-%d", g, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if got := len(j.Take(1 << 20)); got != callers*each {
		t.Fatalf("%d entries durable, want %d", got, callers*each)
	}
	if per := float64(callers*each) / float64(j.Syncs()); per < 3 {
		t.Errorf("%.1f appends per fdatasync (%d fdatasyncs for %d appends), want at least 3", per, j.Syncs(), callers*each)
	}
}

// TestJournalLingerEnds: a flush waiting for a round's callers to come back
// gives up when they do not, and a lone caller after them is answered.
func TestJournalLingerEnds(t *testing.T) {
	j, _, err := audit.OpenJournal(filepath.Join(t.TempDir(), "j"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			if err := j.Append(entry(fmt.Sprintf("g%d", g))); err != nil {
				t.Error(err)
			}
		}(g)
	}
	wg.Wait()
	for i := 0; i < 3; i++ {
		if err := j.Append(entry(fmt.Sprintf("lone%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(j.Take(1 << 20)); got != 11 {
		t.Fatalf("%d entries durable, want 11", got)
	}
}
