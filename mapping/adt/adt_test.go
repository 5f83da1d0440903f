package adt

import (
	"context"
	"os"
	"strings"
	"testing"

	"crs/mapping/hl7v2"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

func newImporter(t *testing.T) (*Importer, *mappingtest.Env) {
	t.Helper()
	env := mappingtest.New(t, "testdata/fixtures.json")
	return importerOf(env), env
}

// importerOf is the importer of the tests on env.
func importerOf(env *mappingtest.Env) *Importer {
	return &Importer{Engine: env.Engine, Config: Config{Facilities: map[string]string{"RR801": "RR8"},
		Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
}

func send(t *testing.T, im *Importer, name string) ([]byte, Result) {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return im.Process(context.Background(), data)
}

func accepted(t *testing.T, im *Importer, name string) Result {
	t.Helper()
	ack, res := send(t, im, name)
	if res.Code != hl7v2.AA {
		t.Fatalf("%s: %s %v\n%s", name, res.Code, res.Err, ack)
	}
	m, err := hl7v2.Parse(ack)
	if err != nil || m.Segment("MSA").Value(1, 1) != "AA" {
		t.Fatalf("%s: ACK %q %v", name, ack, err)
	}
	return res
}

// TestAdmitTransferDischarge: A01 → A02 → A03 → A13 end as one acute
// Encounter in its versions, the Discharge Ready Date on the trust's
// referral, and a Provenance per message; a duplicate stores nothing.
func TestAdmitTransferDischarge(t *testing.T) {
	im, env := newImporter(t)
	accepted(t, im, "a01.hl7")
	encs := env.Search(t, "Encounter", "identifier="+profiles.DefaultCanonicalBase+"/Id/hospital-visit-number/RR8|V1001")
	if len(encs) != 1 || encs[0]["id"] != "bob-acute" {
		t.Fatalf("%d Encounters", len(encs))
	}
	e := mappingtest.JSON(encs[0])
	for _, want := range []string{`"status":"in-progress"`, `"code":"IMP"`, `"display":"WARD 7, BAY 2, BED 3"`, `"reference":"Patient/bob"`,
		`"reference":"Organization/trust"`, `"start":"2026-11-29T10:00:00Z"`} {
		if !strings.Contains(e, want) {
			t.Errorf("A01 Encounter lacks %s: %s", want, e)
		}
	}
	pats := env.Search(t, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9449305552")
	if len(pats) != 1 || !strings.Contains(mappingtest.JSON(pats[0]), `"value":"H123456"`) || !strings.Contains(mappingtest.JSON(pats[0]), `"family":"Smith"`) {
		t.Errorf("Patient after A01 (hospital number added, demographics kept): %s", mappingtest.JSON(pats))
	}
	accepted(t, im, "a02.hl7")
	res := accepted(t, im, "a03.hl7")
	if res.Note != "" {
		t.Errorf("A03 note: %s", res.Note)
	}
	e = mappingtest.JSON(env.Search(t, "Encounter", "_id="+encs[0]["id"].(string))[0])
	for _, want := range []string{`"status":"finished"`, `"display":"WARD 9, BAY 1"`, `"end":"2026-12-02T08:55:00Z"`,
		`"code":"19"`, `"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland"`} {
		if !strings.Contains(e, want) && !strings.Contains(e, strings.ReplaceAll(want, `"WARD 9, BAY 1"`, `"WARD 9"`)) {
			t.Errorf("A03 Encounter lacks %s: %s", want, e)
		}
	}
	sr := mappingtest.JSON(env.Search(t, "ServiceRequest", "_id=bob-ref")[0])
	if !strings.Contains(sr, `"valueDateTime":"2026-12-01T15:30:00Z"`) {
		t.Errorf("referral lacks the Discharge Ready Date: %s", sr)
	}
	versions := env.Versions(t, "Encounter")
	dupAck, dup := send(t, im, "a03.hl7")
	if dup.Code != hl7v2.AA || !dup.Duplicate || env.Versions(t, "Encounter") != versions {
		t.Errorf("duplicate A03: %+v, versions %d → %d", dup, versions, env.Versions(t, "Encounter"))
	}
	if m, err := hl7v2.Parse(dupAck); err != nil || !strings.Contains(m.Segment("MSA").Value(3, 1), "duplicate control id") {
		t.Errorf("duplicate ACK does not say so in MSA-3: %q", dupAck)
	}
	accepted(t, im, "a13.hl7")
	e = mappingtest.JSON(env.Search(t, "Encounter", "_id="+encs[0]["id"].(string))[0])
	if !strings.Contains(e, `"status":"in-progress"`) || strings.Contains(e, `"end"`) || strings.Contains(e, "dischargeDisposition") || !strings.Contains(e, `"versionId":"5"`) {
		t.Errorf("A13 did not correct the Encounter in a new version: %s", e)
	}
	if n := len(env.Search(t, "Provenance", "entity:identifier="+profiles.DefaultCanonicalBase+"/Id/hl7v2-message/RR8|C003")); n != 1 {
		t.Errorf("%d Provenances for C003", n)
	}
	if n := len(env.Search(t, "Provenance", "agent=Organization/trust")); n != 4 {
		t.Errorf("%d Provenances, want one per stored message (4)", n)
	}
}

func TestDemographics(t *testing.T) {
	im, env := newImporter(t)
	accepted(t, im, "a01.hl7")
	accepted(t, im, "a08.hl7")
	p := mappingtest.JSON(env.Search(t, "Patient", "_id=bob")[0])
	for _, want := range []string{`"family":"SMITH"`, `"given":["JONATHAN","A"]`, `"postalCode":"LS2 2BB"`, `"value":"H123456"`} {
		if !strings.Contains(p, want) {
			t.Errorf("A08 Patient lacks %s: %s", want, p)
		}
	}
	accepted(t, im, "a28.hl7")
	// A05 (pre-admit) of the new person: a planned Encounter.
	a05 := strings.NewReplacer("ADT^A28^ADT_A05|C006", "ADT^A05^ADT_A05|C008", "EVN|A28", "EVN|A05").Replace(string(mustRead(t, "a28.hl7"))) +
		"\rPV1|1|I|WARD 3||||||||||||||||V3003\r"
	if ack, res := im.Process(context.Background(), []byte(a05)); res.Code != hl7v2.AA {
		t.Fatalf("A05: %q", ack)
	}
	if e := env.Search(t, "Encounter", "identifier="+profiles.DefaultCanonicalBase+"/Id/hospital-visit-number/RR8|V3003"); len(e) != 1 || e[0]["status"] != "planned" {
		t.Errorf("A05 Encounter: %s", mappingtest.JSON(e))
	}
	p = mappingtest.JSON(env.Search(t, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"))
	for _, want := range []string{`"family":"DOE"`, `"gender":"female"`, `"birthDate":"1950-01-01"`, `"value":"H999"`} {
		if !strings.Contains(p, want) {
			t.Errorf("A28 Patient lacks %s: %s", want, p)
		}
	}
}

func TestBadMessages(t *testing.T) {
	im, env := newImporter(t)
	a01, err := os.ReadFile("testdata/a01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, msg, code, loc, reason string
	}{
		{"not HL7", "GET / HTTP/1.1\r\n", "AR", "MSH", "does not start with MSH"},
		{"unknown facility", strings.Replace(string(a01), "RR801", "XYZ99", 1), "AR", "MSH-4", "not configured"},
		{"unknown event", strings.Replace(string(a01), "ADT^A01^ADT_A01", "ADT^A99", 1), "AR", "MSH-9", "A99"},
		{"not ADT", strings.Replace(string(a01), "ADT^A01^ADT_A01", "ORU^R01", 1), "AR", "MSH-9", "only ADT"},
		{"no control id", strings.Replace(string(a01), "|C001|", "||", 1), "AR", "MSH-10", "control id"},
		{"invalid NHS number", strings.Replace(string(a01), "9449305552", "9449305553", 1), "AE", "PID-3", "NHS number"},
		{"no identifier", strings.Replace(string(a01), "9449305552^^^NHS^NH~H123456^^^RR801^PI", "", 1), "AE", "PID-3", "no patient identifier"},
		{"no visit number", strings.Replace(string(a01), "V1001", "", 1), "AE", "PV1-19", "visit number"},
		{"bad class", strings.Replace(string(a01), "PV1|1|I|", "PV1|1|Q|", 1), "AE", "PV1-2", "patient class"},
		{"bad escape", strings.Replace(string(a01), "ELEC\\F\\TRIC", "ELEC\\F", 1), "AE", "ZU1-3", "unterminated"},
		{"bad birth date", strings.Replace(string(mustRead(t, "a08.hl7")), "19450312", "19451312", 1), "AE", "PID-7", "date of birth"},
		{"cancel unknown admission", string(mustRead(t, "a11-unknown.hl7")), "AE", "PV1-19", "nothing to cancel"},
	} {
		ack, res := im.Process(context.Background(), []byte(c.msg))
		if res.Code != c.code || res.Err == nil || res.Err.Location() != c.loc || !strings.Contains(res.Err.Reason, c.reason) {
			t.Errorf("%s: %s %v, want %s at %s (%s)", c.name, res.Code, res.Err, c.code, c.loc, c.reason)
			continue
		}
		m, err := hl7v2.Parse(ack)
		if err != nil || m.Segment("MSA").Value(1, 1) != c.code || m.Segment("ERR") == nil {
			t.Errorf("%s: ACK %q (%v)", c.name, ack, err)
		}
	}
	if n := env.Versions(t, "Encounter"); n != 1 {
		t.Errorf("refused messages stored %d Encounters", n)
	}
	if n := len(env.Search(t, "Provenance", "")); n != 0 {
		t.Errorf("refused messages stored %d Provenances", n)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDischargeWithoutAdmission: an A03 for a visit crs never saw admitted
// makes the finished Encounter of a new person when it says when the stay
// began (PV1-44); without it the CRS Encounter's rule (a finished encounter
// has its start) refuses it (AE), since the discharge time is not the
// admission's.
func TestDischargeWithoutAdmission(t *testing.T) {
	im, env := newImporter(t)
	msg := strings.NewReplacer("9449305552", "9000000009", "V1001", "V5005", "|C003|", "|C010|").Replace(string(mustRead(t, "a03.hl7")))
	if _, res := im.Process(context.Background(), []byte(msg)); res.Code != hl7v2.AE || !strings.Contains(res.Err.Reason, "period.start is missing") {
		t.Fatalf("A03 without PV1-44: %+v", res)
	}
	msg = strings.Replace(msg, "|20261202085500", "20261201080000|20261202085500", 1)
	if ack, res := im.Process(context.Background(), []byte(msg)); res.Code != hl7v2.AA || !strings.Contains(res.Note, "no referral") {
		t.Fatalf("A03: %q %+v", ack, res)
	}
	e := env.Search(t, "Encounter", "identifier="+profiles.DefaultCanonicalBase+"/Id/hospital-visit-number/RR8|V5005")
	if len(e) != 1 || e[0]["status"] != "finished" || mappingtest.JSON(e[0]["period"]) != `{"end":"2026-12-02T08:55:00Z","start":"2026-12-01T08:00:00Z"}` {
		t.Errorf("Encounter: %s", mappingtest.JSON(e))
	}
}

// TestHospitalNumberWithSeparators: a hospital number holding the search
// separators (comma, bar, dollar, backslash) is escaped in the Patient
// look-up, so a later message finds the same person instead of failing or
// making a second one.
func TestHospitalNumberWithSeparators(t *testing.T) {
	im, env := newImporter(t)
	// PID-3 H,7\F\1$2\E\: the hospital number H,7|1$2\ (HL7 escapes \F\ and \E\).
	// The A01 sends the NHS number too, the A08 only the hospital number.
	msg := func(event, ctl, nhs, family, visit string) []byte {
		return []byte("MSH|^~\\&|PAS|RR801|CRS|CRS|20261129101500||ADT^" + event + "|" + ctl + "|P|2.4\rEVN|" + event + "|20261129101500\r" +
			"PID|1||" + nhs + "H,7\\F\\1$2\\E\\^^^RR801^PI||" + family + "^JOHN||19450312|M\rPV1|1|I|WARD 7||||||||||||||||" + visit + "\r")
	}
	for _, m := range [][]byte{msg("A01", "SEP1", "9990000018^^^NHS^NH~", "SMITH", "SEPV1"), msg("A08", "SEP2", "", "SMYTH", "")} {
		if ack, res := im.Process(context.Background(), m); res.Code != hl7v2.AA {
			t.Fatalf("%s %v\n%s", res.Code, res.Err, ack)
		}
	}
	found := env.Search(t, "Patient", "identifier="+profiles.DefaultCanonicalBase+`/Id/hospital-number/RR8|H\,7\|1\$2\\`)
	if len(found) != 1 {
		t.Fatalf("%d Patients with the hospital number, want 1", len(found))
	}
	if got := mappingtest.JSON(found[0]); !strings.Contains(got, `"family":"SMYTH"`) {
		t.Errorf("the A08 did not update the person the A01 made: %s", got)
	}
}
