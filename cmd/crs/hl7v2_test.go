package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/mapping/hl7v2"
	"crs/mapping/mllp"
	"crs/profiles"
)

// TestMLLPAndImportHL7v2: crs serve --mllp-addr acknowledges ADT over TCP
// and stores it; crs import hl7v2 applies a file of messages to the same
// store, skipping the control ids already applied.
func TestMLLPAndImportHL7v2(t *testing.T) {
	dir := t.TempDir()
	storeSpec := "sqlite:" + filepath.Join(dir, "crs.db")
	var logs bytes.Buffer
	m := &Main{
		Config: Config{Addr: "127.0.0.1:0", Store: storeSpec, MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100,
			ProfileEnforcement: "strict", CanonicalBase: profiles.DefaultCanonicalBase, AuditQueue: 1000,
			MLLPAddr: "127.0.0.1:0", HL7v2Facilities: "RR801=RR8", HL7v2DischargeReadyDate: "PV2-9"},
		Log: slog.New(slog.NewJSONHandler(&logs, nil)),
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + m.Addr() + "/fhir"
	if status, _ := post(t, base+"/Organization", `{"resourceType":"Organization","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RR8"}],"name":"Leeds Teaching Hospitals"}`); status != http.StatusCreated {
		t.Fatalf("organisation: %d", status)
	}
	a01, err := os.ReadFile("../../mapping/adt/testdata/a01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", m.MLLPAddr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := mllp.WriteFrame(c, a01); err != nil {
		t.Fatal(err)
	}
	raw, err := mllp.ReadFrame(bufio.NewReader(c), mllp.DefaultMaxMessage, nil)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	ack, err := hl7v2.Parse(raw)
	if err != nil || ack.Segment("MSA").Value(1, 1) != "AA" {
		t.Fatalf("ACK %q %v", raw, err)
	}
	if n := count(t, base+"/Encounter?identifier="+profiles.DefaultCanonicalBase+"/Id/hospital-visit-number/RR8|V1001"); n != 1 {
		t.Fatalf("%d Encounters after A01 over MLLP", n)
	}
	if !strings.Contains(logs.String(), `"msg":"hl7v2 message"`) {
		t.Errorf("no log line per message: %s", logs.String())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// The same A01 again and an A03, as a file: the A01 is skipped, the A03 applied.
	a03, err := os.ReadFile("../../mapping/adt/testdata/a03.hl7")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "adt.hl7")
	if err := os.WriteFile(file, append(append(a01, '\n'), a03...), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"import", "hl7v2", "--store", storeSpec, "--facilities", "RR801=RR8", file}, &out, &errOut); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "2 messages: 2 accepted (1 already applied)") {
		t.Errorf("summary %q (%s)", out.String(), errOut.String())
	}
	if err := run([]string{"import", "hl7v2", "--store", storeSpec, file}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "facilities") {
		t.Errorf("import without --facilities: %v", err)
	}
}

func count(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct{ Total int }
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Total
}
