package engine_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"crs/audit"
	"crs/fhir/engine"
)

// TestJournalMaterialisedAfterBurst: AuditEvents of a burst of reads, left in
// the journal while the reads go on, are all stored as resources soon after
// the burst ends, without a search of AuditEvents asking for them, linked in
// one unbroken chain.
func TestJournalMaterialisedAfterBurst(t *testing.T) {
	sq, v := openStore(t)
	j, _, err := audit.OpenJournal(filepath.Join(t.TempDir(), "audit-journal"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	eng := engine.New(engine.Config{Store: sq, Validator: v, Base: "http://test/fhir", Audit: true, AuditJournal: j})
	defer eng.Close()
	ctx := context.Background()
	res, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"B"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(300 * time.Millisecond)
	var mu sync.Mutex
	reads := 0
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := eng.Read(ctx, "Patient", res.Version.ID); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				reads++
				mu.Unlock()
			}
		}()
	}
	// Writes store their AuditEvents in their own transactions meanwhile:
	// the chain runs through both, in one line.
	creates := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			if _, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"C"}]}`), ""); err != nil {
				t.Error(err)
				return
			}
			creates++
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for eng.AuditQueueDepth() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d AuditEvents still not materialised 10 s after the burst", eng.AuditQueueDepth())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := verifyChain(t, sq); got != reads+creates+1 {
		t.Fatalf("%d AuditEvents stored, want %d (%d creates + %d reads)", got, reads+creates+1, creates+1, reads)
	}
}
