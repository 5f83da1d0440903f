package adt

import (
	"context"
	"strings"
	"testing"

	"crs/mapping/hl7v2"
	"crs/mapping/mappingtest"
)

// TestVisitLookup: the Encounter's search by visit number runs beside the
// Patient's; its answer is still checked against the Patient found (a visit
// number of another person is refused, nothing stored), and a message about
// a known visit updates that Encounter rather than making a second.
func TestVisitLookup(t *testing.T) {
	im, env := newImporter(t)
	accepted(t, im, "a01.hl7") // 9449305552, visit V1001
	other := strings.NewReplacer("9449305552", "9000000009", "H123456", "H777777", "V1001", "V2002", "|C001|", "|C101|").Replace(string(mustRead(t, "a01.hl7")))
	if _, res := im.Process(context.Background(), []byte(other)); res.Code != hl7v2.AA {
		t.Fatalf("second person's A01: %s %v", res.Code, res.Err)
	}
	encounters, provenances := env.Versions(t, "Encounter"), env.Versions(t, "Provenance")
	stolen := strings.NewReplacer("V2002", "V1001", "|C101|", "|C102|").Replace(other)
	_, res := im.Process(context.Background(), []byte(stolen))
	if res.Code != hl7v2.AE || res.Err == nil || res.Err.Location() != "PV1-19" || !strings.Contains(res.Err.Reason, "belongs to another Patient") {
		t.Fatalf("A01 naming another person's visit: %s %v, want AE at PV1-19", res.Code, res.Err)
	}
	if n, m := env.Versions(t, "Encounter"), env.Versions(t, "Provenance"); n != encounters || m != provenances {
		t.Errorf("the refused message stored: Encounter versions %d → %d, Provenance versions %d → %d", encounters, n, provenances, m)
	}
	transfer := strings.NewReplacer("ADT^A01^ADT_A01|C101|", "ADT^A02^ADT_A02|C103|", "EVN|A01", "EVN|A02", "WARD 7", "WARD 9").Replace(other)
	if _, res := im.Process(context.Background(), []byte(transfer)); res.Code != hl7v2.AA {
		t.Fatalf("A02: %s %v", res.Code, res.Err)
	}
	if n := env.Versions(t, "Encounter"); n != encounters+1 {
		t.Errorf("the A02 left %d Encounter versions, want %d (a new version of V2002's)", n, encounters+1)
	}
	e := env.Search(t, "Encounter", "identifier="+im.system(visitNumberPath+"RR8")+"|V2002")
	if len(e) != 1 || !strings.Contains(mappingtest.JSON(e[0]["location"]), "WARD 9") {
		t.Errorf("V2002 after the A02: %v", e)
	}
}
