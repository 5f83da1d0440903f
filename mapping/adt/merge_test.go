package adt

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"crs/mapping/hl7v2"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// TestMerge: an A40 merges the Patient named by MRG-1 into the one named by
// PID-3: the merged one inactive and replaced-by, the survivor replaces, and
// every record referring to the merged one — the trust's and other
// organisations' (a carer, a care team) — moved to the survivor in the same
// transaction, each move audited; the audit chain verifies; the message again
// stores nothing.
func TestMerge(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures-merge.json")
	im := &Importer{Engine: env.Engine, Config: Config{Facilities: map[string]string{"RR801": "RR8"},
		Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
	res := accepted(t, im, "a40.hl7")
	if len(res.Written) != 2 {
		t.Errorf("written %v, want the two Patients", res.Written)
	}
	dup := env.Search(t, "Patient", "_id=dup")[0]
	if dup["active"] != false || !strings.Contains(mappingtest.JSON(dup["link"]), `"other":{"reference":"Patient/bob"},"type":"replaced-by"`) {
		t.Errorf("merged Patient: %s", mappingtest.JSON(dup))
	}
	bob := env.Search(t, "Patient", "_id=bob")[0]
	if !strings.Contains(mappingtest.JSON(bob["link"]), `"other":{"reference":"Patient/dup"},"type":"replaces"`) {
		t.Errorf("surviving Patient: %s", mappingtest.JSON(bob))
	}
	for _, q := range []struct{ rt, id, want string }{
		{"Encounter", "dup-acute", `"subject":{"reference":"Patient/bob"}`},
		{"ServiceRequest", "dup-ref", `"subject":{"reference":"Patient/bob"}`},
		{"RelatedPerson", "dup-carer", `"patient":{"reference":"Patient/bob"}`},
		{"CareTeam", "dup-team", `"subject":{"reference":"Patient/bob"}`},
	} {
		got := env.Search(t, q.rt, "_id="+q.id)
		if len(got) != 1 {
			t.Fatalf("%s/%s: %d", q.rt, q.id, len(got))
		}
		s := mappingtest.JSON(got[0])
		if !strings.Contains(s, q.want) || strings.Contains(s, "Patient/dup") {
			t.Errorf("%s/%s not moved: %s", q.rt, q.id, s)
		}
	}
	if n := len(env.Search(t, "CareTeam", "participant=Patient/bob")); n != 1 {
		t.Errorf("the care team's member reference was not moved (%d)", n)
	}
	events := strings.Join(env.VerifyAudit(t), "\n")
	for _, moved := range []string{"RelatedPerson/dup-carer/_history/2", "CareTeam/dup-team/_history/2", "Encounter/dup-acute/_history/2"} {
		if !strings.Contains(events, moved) {
			t.Errorf("no AuditEvent names %s", moved)
		}
	}
	// The merged Patient's hospital number now names the survivor.
	if r := accepted(t, im, "a08-merged.hl7"); len(r.Written) != 1 || !strings.HasPrefix(r.Written[0], "Patient/bob/") {
		t.Errorf("an A08 for the merged hospital number wrote %v, want Patient/bob", r.Written)
	}
	before := env.Versions(t, "Patient") + env.Versions(t, "RelatedPerson")
	if _, r := send(t, im, "a40.hl7"); r.Code != hl7v2.AA || !r.Duplicate {
		t.Errorf("resent A40: %s duplicate %v", r.Code, r.Duplicate)
	}
	if after := env.Versions(t, "Patient") + env.Versions(t, "RelatedPerson"); after != before {
		t.Errorf("the resent A40 wrote %d versions", after-before)
	}
}

// TestMergeRefused: a merge naming a patient not on the record, or one
// already merged, is AE with an ERR naming the field; nothing is stored.
func TestMergeRefused(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures-merge.json")
	im := &Importer{Engine: env.Engine, Config: Config{Facilities: map[string]string{"RR801": "RR8"},
		Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
	before := env.Versions(t, "Patient")
	ack, res := send(t, im, "a40-unknown.hl7")
	if res.Code != hl7v2.AE || res.Err == nil || res.Err.Segment != "MRG" || res.Err.Field != 1 || !strings.Contains(string(ack), "ERR|") {
		t.Fatalf("%s %v\n%s", res.Code, res.Err, ack)
	}
	if env.Versions(t, "Patient") != before {
		t.Errorf("a refused merge wrote a Patient")
	}
	accepted(t, im, "a40.hl7")
	raw, err := os.ReadFile("testdata/a40.hl7")
	if err != nil {
		t.Fatal(err)
	}
	data := strings.Replace(string(raw), "|C040|", "|C042|", 1)
	if _, res := im.Process(t.Context(), []byte(data)); res.Code != hl7v2.AE || res.Err.Segment != "MRG" {
		t.Errorf("merging a merged Patient again: %s %v", res.Code, res.Err)
	}
}

// TestCancelTransfer: an A12 puts the Encounter back in the location it
// sends, as a new version.
func TestCancelTransfer(t *testing.T) {
	im, env := newImporter(t)
	accepted(t, im, "a01.hl7")
	accepted(t, im, "a02.hl7")
	accepted(t, im, "a12.hl7")
	e := env.Search(t, "Encounter", "_id=bob-acute")[0]
	if s := mappingtest.JSON(e); !strings.Contains(s, `"display":"WARD 7, BAY 2, BED 3"`) || !strings.Contains(s, `"status":"in-progress"`) {
		t.Errorf("after A12: %s", s)
	}
}

// TestConcurrentMerges: the same merge sent at once under several control
// ids (two connections of the trust's engine resending) is applied once: its
// lookups run inside its transaction (Engine.MergePatientsWith), so each
// other copy finds the merge done (MRG-1 now names the survivor) and is
// refused at MRG-1 with nothing stored, never a version conflict from a
// stale lookup; copies of
// one control id are acknowledged as duplicates. One Provenance per control
// id applied, the merged Patient written once.
func TestConcurrentMerges(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures-merge.json")
	im := &Importer{Engine: env.Engine, Config: Config{Facilities: map[string]string{"RR801": "RR8"},
		Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
	raw, err := os.ReadFile("testdata/a40.hl7")
	if err != nil {
		t.Fatal(err)
	}
	patients := env.Versions(t, "Patient")
	ids := []string{"C040", "C040", "C051", "C052", "C053", "C051"}
	results := make([]Result, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = im.Process(context.Background(), []byte(strings.Replace(string(raw), "|C040|", "|"+id+"|", 1)))
		}()
	}
	wg.Wait()
	applied := 0
	for i, res := range results {
		switch {
		case res.Code == hl7v2.AA && !res.Duplicate:
			applied++
		case res.Code == hl7v2.AA:
		case res.Code == hl7v2.AE && res.Err != nil && res.Err.Segment == "MRG" && strings.Contains(res.Err.Reason, "nothing to merge"):
			// MRG-1's identifiers now stand for the survivor.
		default:
			t.Errorf("copy %d (%s): %s %+v", i, ids[i], res.Code, res.Err)
		}
	}
	if applied != 1 {
		t.Errorf("%d merges applied, want 1", applied)
	}
	if n := env.Versions(t, "Patient") - patients; n != 2 {
		t.Errorf("%d Patient versions written, want 2 (the merged one and the survivor)", n)
	}
	provenances := 0
	for _, id := range []string{"C040", "C051", "C052", "C053"} {
		provenances += len(env.Search(t, "Provenance", "entity:identifier="+profiles.DefaultCanonicalBase+"/Id/hl7v2-message/RR8|"+id))
	}
	if provenances != 1 {
		t.Errorf("%d Provenances, want 1", provenances)
	}
	env.VerifyAudit(t)
}
