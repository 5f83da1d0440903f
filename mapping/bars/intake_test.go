package bars

import (
	"bufio"
	"context"
	"net"
	"os"
	"testing"
	"time"

	"crs/mapping/adt"
	"crs/mapping/hl7v2"
	"crs/mapping/mllp"
	"crs/profiles"
)

// TestADTAndReferralOnePerson is issue 12's acceptance: an A01 → A03
// sequence over MLLP and a BaRS referral for the same person end as one
// Patient with one acute Encounter, one CRS Referral carrying the Discharge
// Ready Date the A03 sent, and a Provenance for each message.
func TestADTAndReferralOnePerson(t *testing.T) {
	r, env := newReceiver(t)
	im := &adt.Importer{Engine: env.Engine, Config: adt.Config{Facilities: map[string]string{"RR801": "RR8"},
		Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
	srv := &mllp.Server{Handler: func(ctx context.Context, msg []byte) []byte { ack, _ := im.Process(ctx, msg); return ack }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	send := func(name string) {
		t.Helper()
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if err := mllp.WriteFrame(conn, data); err != nil {
			t.Fatal(err)
		}
		raw, err := mllp.ReadFrame(br, mllp.DefaultMaxMessage, nil)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := hl7v2.Parse(raw)
		if err != nil || ack.Segment("MSA").Value(1, 1) != hl7v2.AA {
			t.Fatalf("%s: ACK %q %v", name, raw, err)
		}
	}

	send("a01.hl7")
	ok(t, r, "new.json")
	send("a03.hl7")

	nhs := "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"
	pat := one(t, env, "Patient", nhs)
	pid := "Patient/" + pat["id"].(string)
	enc := one(t, env, "Encounter", "subject="+pid)
	has(t, "encounter", enc, `"status":"finished"`, `"end":"2026-12-03T08:55:00Z"`, `"value":"V2001"`)
	sr := one(t, env, "ServiceRequest", "subject="+pid)
	has(t, "referral", sr, `CRS-Referral`, `"reference":"Encounter/`+enc["id"].(string)+`"`,
		`"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-DischargeReadyDate","valueDateTime":"2026-12-02T15:30:00Z"`)
	provs := env.Search(t, "Provenance", "target="+pid)
	if len(provs) != 3 {
		t.Fatalf("%d Provenances name %s, want 3 (A01, the referral, A03)", len(provs), pid)
	}
	for _, want := range []string{"/Id/hl7v2-message/RR8|M001", "/Id/bars-message|a0c5e7d2-1f4b-4e8a-9c3d-000000000001"} {
		if n := len(env.Search(t, "Provenance", "entity:identifier="+profiles.DefaultCanonicalBase+want)); n != 1 {
			t.Errorf("%d Provenances of %s", n, want)
		}
	}
	if n := len(env.Search(t, "Provenance", "entity:identifier="+profiles.DefaultCanonicalBase+"/Id/hl7v2-message/RR8|M002&target="+sr["resourceType"].(string)+"/"+sr["id"].(string))); n != 1 {
		t.Errorf("the A03's Provenance does not name the referral it put the Discharge Ready Date on")
	}
}
