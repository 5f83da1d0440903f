package mllp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/mapping/adt"
	"crs/mapping/hl7v2"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// Messages of TestGroupCommit: an admission to a ward, a transfer, a discharge.
const (
	gcAdmit     = "MSH|^~\\&|PAS|RR801|CRS|CRS|20261129101500||ADT^A01|%s|P|2.4\rEVN|A01|20261129101500\rPID|1||%s^^^NHS^NH~GH%d^^^RR801^PI||SMITH^JOHN||19450312|M\rPV1|1|I|WARD 1||||||||||||||||GV%d\r"
	gcTransfer  = "MSH|^~\\&|PAS|RR801|CRS|CRS|20261129111500||ADT^A02|%s|P|2.4\rEVN|A02|20261129111500\rPID|1||%s^^^NHS^NH~GH%d^^^RR801^PI||SMITH^JOHN||19450312|M\rPV1|1|I|WARD 2||||||||||||||||GV%d\r"
	gcDischarge = "MSH|^~\\&|PAS|RR801|CRS|CRS|20261129121500||ADT^A03|%s|P|2.4\rEVN|A03|20261129121500\rPID|1||%s^^^NHS^NH~GH%d^^^RR801^PI||SMITH^JOHN||19450312|M\rPV1|1|I|WARD 2||||||||||||||||GV%d\r"
)

// TestGroupCommit: messages of 8 connections sent at once are written in
// shared SQLite transactions (one commit, one sync, for several messages),
// and still each on its own:
//   - a message that fails inside the shared transaction (an admission of a
//     person whose NHS number another Patient, one the trust cannot see,
//     already holds: refused by the engine after the message's first writes)
//     is AE and leaves no trace — no Provenance, Patient or Encounter of it —
//     while the messages committed beside it are AA and stored;
//   - every AA is sent only after the commit that holds its message: when
//     the client reads it, a fresh read (the store's read pool, outside the
//     writer) already finds the message's Provenance;
//   - each connection's messages are applied and acknowledged in the order
//     sent (sent back to back, before any ACK is read): each person's
//     Encounter ends discharged from WARD 2 in version 3, and the ACKs name
//     the control ids in order.
func TestGroupCommit(t *testing.T) {
	const conns = 8
	var commits, grouped atomic.Int64
	var hold atomic.Bool
	opt := sqlite.Options{NoSync: true, OnCommit: func(writes int, _ time.Duration, _ error) {
		commits.Add(1)
		if writes > 1 {
			grouped.Add(1)
		}
		if hold.CompareAndSwap(true, false) {
			// Hold the writer once, so that the connections' next messages
			// queue behind it and share the following commits.
			time.Sleep(100 * time.Millisecond)
		}
	}}
	// Every write pauses inside its transaction, after its writes and before
	// the batch's COMMIT: an ACK sent before the commit would be read by
	// the client while the message is not yet visible.
	var pause atomic.Bool
	env := mappingtest.NewWrapped(t, "../adt/testdata/fixtures.json", opt, func(st store.Store) store.Store {
		return pausedStore{Store: st, pause: &pause}
	})
	im := &adt.Importer{Engine: env.Engine, Config: adt.Config{Facilities: map[string]string{"RR801": "RR8"}, Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
	addr := start(t, &Server{Handler: func(ctx context.Context, msg []byte) []byte { ack, _ := im.Process(ctx, msg); return ack }})
	// The Patients the failing admissions collide with: not the trust's.
	admin := auth.WithPrincipal(context.Background(), env.Admin)
	for c := range conns {
		other := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}],"name":[{"family":"OTHER"}],"gender":"female","birthDate":"1950-01-01"}}]}`, nhsNumber(2000+c))
		if _, err := env.Engine.Bundle(admin, []byte(other), engine.SearchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	type step struct{ ctl, msg, code string }
	plan := make([][]step, conns)
	for c := range plan {
		p, f := 1000+c, 2000+c
		plan[c] = []step{
			{fmt.Sprintf("G%d-1", c), fmt.Sprintf(gcAdmit, fmt.Sprintf("G%d-1", c), nhsNumber(p), p, p), hl7v2.AA},
			{fmt.Sprintf("G%d-2", c), fmt.Sprintf(gcAdmit, fmt.Sprintf("G%d-2", c), nhsNumber(f), f, f), hl7v2.AE},
			{fmt.Sprintf("G%d-3", c), fmt.Sprintf(gcTransfer, fmt.Sprintf("G%d-3", c), nhsNumber(p), p, p), hl7v2.AA},
			{fmt.Sprintf("G%d-4", c), fmt.Sprintf(gcDischarge, fmt.Sprintf("G%d-4", c), nhsNumber(p), p, p), hl7v2.AA},
		}
	}
	clients := make([]*client, conns)
	for c := range clients {
		clients[c] = dial(t, addr)
	}
	hold.Store(true)
	pause.Store(true)
	var wg sync.WaitGroup
	errs := make(chan string, conns*8)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := clients[c]
			var frames []byte
			for _, s := range plan[c] {
				frames = append(append(append(frames, StartBlock), s.msg...), EndBlock, CR)
			}
			if _, err := cl.c.Write(frames); err != nil {
				errs <- err.Error()
				return
			}
			for _, s := range plan[c] {
				b, err := ReadFrame(cl.r, DefaultMaxMessage, nil)
				if err != nil {
					errs <- fmt.Sprintf("%s: read ACK: %v", s.ctl, err)
					return
				}
				ack, err := hl7v2.Parse(b)
				if err != nil {
					errs <- fmt.Sprintf("%s: ACK %q: %v", s.ctl, b, err)
					return
				}
				msa := ack.Segment("MSA")
				if msa.Value(2, 1) != s.ctl || msa.Value(1, 1) != s.code {
					errs <- fmt.Sprintf("ACK %q, want %s for %s (in the order sent)", b, s.code, s.ctl)
				}
				if s.code != hl7v2.AA {
					continue
				}
				// Committed before its ACK: a fresh read finds it.
				q := "entity:identifier=" + profiles.DefaultCanonicalBase + "/Id/hl7v2-message/RR8|" + s.ctl
				raw, err := engine.ParseQueryString(q)
				if err != nil {
					errs <- err.Error()
					continue
				}
				found, err := env.Engine.Search(admin, "Provenance", raw, engine.SearchOptions{})
				if err != nil {
					errs <- err.Error()
				} else if n := len(found.Entry); n != 1 {
					errs <- fmt.Sprintf("%s acknowledged before its commit: a read finds %d Provenances", s.ctl, n)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if grouped.Load() == 0 {
		t.Fatalf("no commit held more than one message (%d commits): group commit was not exercised", commits.Load())
	}
	for c := range conns {
		p, f := 1000+c, 2000+c
		for _, q := range []struct{ rt, query string }{
			{"Provenance", "entity:identifier=" + profiles.DefaultCanonicalBase + "/Id/hl7v2-message/RR8|" + fmt.Sprintf("G%d-2", c)},
			{"Patient", fmt.Sprintf("identifier=%s/Id/hospital-number/RR8|GH%d", profiles.DefaultCanonicalBase, f)},
			{"Encounter", fmt.Sprintf("identifier=%s/Id/hospital-visit-number/RR8|GV%d", profiles.DefaultCanonicalBase, f)},
		} {
			if got := env.Search(t, q.rt, q.query); len(got) != 0 {
				t.Errorf("the failed message G%d-2 left %s %s", c, q.rt, mappingtest.JSON(got))
			}
		}
		encs := env.Search(t, "Encounter", fmt.Sprintf("identifier=%s/Id/hospital-visit-number/RR8|GV%d", profiles.DefaultCanonicalBase, p))
		if len(encs) != 1 {
			t.Fatalf("person %d: %d Encounters", c, len(encs))
		}
		s := mappingtest.JSON(encs[0])
		if encs[0]["status"] != "finished" || !strings.Contains(s, `"display":"WARD 2"`) || encs[0]["meta"].(map[string]any)["versionId"] != "3" {
			t.Errorf("person %d: Encounter after admit, transfer, discharge: %s", c, s)
		}
	}
}

// pausedStore pauses each successful write function (inside its
// transaction, before the commit) while pause is set.
type pausedStore struct {
	store.Store
	pause *atomic.Bool
}

// Write implements store.Store.
func (s pausedStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Write(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.pause.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
}
