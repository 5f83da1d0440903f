package adt

import (
	"context"
	"strings"
	"sync"
	"testing"

	"crs/fhir/store/sqlite"
	"crs/mapping/hl7v2"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// TestConcurrentDuplicates: the same message sent on several connections at
// once is stored once: its lookups run inside its transaction, so the
// duplicate control id check of each copy sees the copy stored before it.
func TestConcurrentDuplicates(t *testing.T) {
	im, env := newImporter(t)
	encounters := env.Versions(t, "Encounter")
	msg := mustRead(t, "a01.hl7")
	const copies = 6
	results := make([]Result, copies)
	var wg sync.WaitGroup
	for i := range copies {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, results[i] = im.Process(context.Background(), msg)
		}(i)
	}
	wg.Wait()
	stored := 0
	for i, res := range results {
		switch {
		case res.Code != hl7v2.AA:
			t.Errorf("copy %d: %s %v", i, res.Code, res.Err)
		case !res.Duplicate:
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d copies stored, want 1 (the others acknowledged as duplicates)", stored)
	}
	if n := len(env.Search(t, "Provenance", "entity:identifier="+profiles.DefaultCanonicalBase+"/Id/hl7v2-message/RR8|C001")); n != 1 {
		t.Errorf("%d Provenances for C001, want 1", n)
	}
	if n := env.Versions(t, "Encounter"); n != encounters+1 {
		t.Errorf("%d new Encounter versions, want 1", n-encounters)
	}
}

// TestOneAuditEventPerMessage: a message's lookups and writes are one
// audited interaction: one AuditEvent naming what it found and wrote, and
// for a message refused (AE, nothing stored) one naming what its lookups
// found; the hash chain verifies.
func TestOneAuditEventPerMessage(t *testing.T) {
	t.Run("in the transaction", func(t *testing.T) {
		im, env := newImporter(t)
		oneAuditEventPerMessage(t, im, env)
	})
	// As crs serve runs: the message's audit record is a pending row in its
	// transaction, stored as the AuditEvent behind.
	t.Run("journal", func(t *testing.T) {
		env := mappingtest.NewServing(t, "testdata/fixtures.json", sqlite.Options{NoSync: true})
		oneAuditEventPerMessage(t, importerOf(env), env)
	})
}

func oneAuditEventPerMessage(t *testing.T, im *Importer, env *mappingtest.Env) {
	accepted(t, im, "a01.hl7")
	before := len(env.VerifyAudit(t))
	res := accepted(t, im, "a02.hl7")
	all := env.VerifyAudit(t)
	if len(all) != before+1 {
		t.Fatalf("an A02 made %d AuditEvents, want 1", len(all)-before)
	}
	last := all[len(all)-1]
	for _, want := range append([]string{"Patient/bob/_history/", "Provenance/"}, res.Written...) {
		if !strings.Contains(last, want) {
			t.Errorf("the A02's AuditEvent does not name %s: %s", want, last)
		}
	}
	// The visit number of another person: refused, nothing stored, audited.
	other := strings.NewReplacer("9449305552", "9000000009", "H123456", "H777777", "V1001", "V2002", "|C001|", "|C101|").Replace(string(mustRead(t, "a01.hl7")))
	if _, res := im.Process(context.Background(), []byte(other)); res.Code != hl7v2.AA {
		t.Fatalf("second person's A01: %s %v", res.Code, res.Err)
	}
	stolen := strings.NewReplacer("9449305552", "9000000009", "|C002|", "|C902|").Replace(string(mustRead(t, "a02.hl7")))
	before = len(env.VerifyAudit(t))
	if _, res := im.Process(context.Background(), []byte(stolen)); res.Code != hl7v2.AE {
		t.Fatalf("A02 naming another person's visit: %s %v, want AE", res.Code, res.Err)
	}
	all = env.VerifyAudit(t)
	if len(all) != before+1 || !strings.Contains(all[len(all)-1], "Encounter/") {
		t.Errorf("the refused A02 made %d AuditEvents (want 1 naming the Encounter it found)", len(all)-before)
	}
}

// TestNewPersonCannotTakeAVisit: a message about a person not on the record
// naming the visit number of someone who is is refused (AE at PV1-19), and
// stores nothing: neither the new person nor the Encounter moved to them.
func TestNewPersonCannotTakeAVisit(t *testing.T) {
	im, env := newImporter(t)
	accepted(t, im, "a01.hl7") // 9449305552, visit V1001
	patients, encounters := env.Versions(t, "Patient"), env.Versions(t, "Encounter")
	stranger := strings.NewReplacer("9449305552", "9000000009", "|C002|", "|C903|").Replace(string(mustRead(t, "a02.hl7")))
	_, res := im.Process(context.Background(), []byte(stranger))
	if res.Code != hl7v2.AE || res.Err == nil || res.Err.Location() != "PV1-19" {
		t.Fatalf("a new person's A02 naming another person's visit: %s %v, want AE at PV1-19", res.Code, res.Err)
	}
	if p, e := env.Versions(t, "Patient"), env.Versions(t, "Encounter"); p != patients || e != encounters {
		t.Errorf("the refused message stored: Patient versions %d → %d, Encounter versions %d → %d", patients, p, encounters, e)
	}
}
