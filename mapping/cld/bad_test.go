package cld_test

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"crs/mapping"
	"crs/mapping/cld"
	"crs/mapping/mappingtest"
)

const header = "LA_Code,NHS_Number,LA_Person_Unique_Identifier,Gender,Ethnicity,Date_of_Birth,Postcode,Event_Type,Event_Reference,Event_Start_Date,Event_End_Date,Event_Outcome,Service_Component,Provider_CQC_Location_ID\n"

// TestBadRows: each bad row is reported with its line, field and reason and
// the rest of the file proceeds.
func TestBadRows(t *testing.T) {
	e := newEnv(t)
	rows := []struct{ row, field, reason string }{
		{"E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Assessment,A-1,2026-11-20,,,,", "", ""},
		{"E10000031,9000000009,LA-1001,Female,White British,1941-13-45,CV21,Assessment,A-2,2026-11-20,,,,", "Date_of_Birth", `"1941-13-45" is not a date`},
		{"E10000031,9000000008,LA-1001,Female,White British,1941-03-14,CV21,Assessment,A-3,2026-11-20,,,,", "NHS_Number", "fails the Modulus 11 check"},
		{"E10000031,9000000009,LA-1001,Fish,White British,1941-03-14,CV21,Assessment,A-4,2026-11-20,,,,", "Gender", `unknown code "Fish": ConceptMap https://community-recovery.example.org/fhir/ConceptMap/cld-gender`},
		{"E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Assessment,A-1,2026-11-20,,,,", "Event_Reference", `event reference "A-1" repeats the one on line 2`},
		{"E08000026,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Assessment,A-6,2026-11-20,,,,", "LA_Code", `local authority "E08000026", not this council's E10000031`},
		{"E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Review,A-7,2026-11-20,,Gone fishing,,", "Event_Outcome", `unknown code "Gone fishing": ConceptMap https://community-recovery.example.org/fhir/ConceptMap/cld-review-outcome`},
		{"E10000031,9434765919,LA-2001,Male,White British,1940-01-01,CV21,Service,S-8,2026-11-20,,,Reablement,1-000000001", "Event_Type", "no referral to the pathway for this person"},
		{"E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Visit,A-9,2026-11-20,,,,", "Event_Type", `"Visit" is not an event type`},
		{"E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Assessment,A-10,2026-11-20,,,,,surplus", "", "the row has 15 fields but the header has 14 columns"},
		{"E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Review,A-11,2026-11-20,,Service ended as planned,,", "Event_Start_Date", "no EpisodeOfCare of this person started on or before 2026-11-20"},
	}
	var b strings.Builder
	b.WriteString(header)
	for _, r := range rows {
		b.WriteString(r.row + "\n")
	}
	sum, report, err := e.importFile(t, "bad.csv", []byte(b.String()), cld.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if r.reason == "" {
			continue
		}
		prefix := fmt.Sprintf("%d,%s,rejected,", i+2, r.field)
		found := false
		for _, l := range strings.Split(report, "\n") {
			if strings.HasPrefix(l, prefix) && strings.Contains(strings.ReplaceAll(l, `""`, `"`), r.reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("line %d: want %s…%s in the report:\n%s", i+2, prefix, r.reason, report)
		}
	}
	if sum.Rejected != len(rows)-1 || sum.Rows != len(rows) || sum.Updated != 1 {
		t.Errorf("summary %v\n%s", sum, report)
	}
	// The rejected Service row's new person was not half-stored.
	if p := e.Search(t, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"); len(p) != 0 {
		t.Errorf("a rejected row left its Patient: %v", p)
	}
}

// TestHeldConflict: identifiers naming two different people hold the row,
// with both as candidates; nothing is merged.
func TestHeldConflict(t *testing.T) {
	e := newEnv(t)
	first := header + "E10000031,9876543210,LA-2002,Male,White British,1938-07-02,CV22,Assessment,A-1,2026-11-20,,,,\n"
	if _, report, err := e.importFile(t, "one.csv", []byte(first), cld.Options{}); err != nil {
		t.Fatal(err, report)
	}
	// Alice's NHS number with the other person's LA id.
	second := header + "E10000031,9000000009,LA-2002,Female,White British,1941-03-14,CV21,Assessment,A-2,2026-11-21,,,,\n"
	sum, report, err := e.importFile(t, "two.csv", []byte(second), cld.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Held != 1 || sum.Updated+sum.Created != 0 || !strings.Contains(report, "name different Patients") {
		t.Fatalf("%v\n%s", sum, report)
	}
	tasks := e.Search(t, "Task", "code=https://community-recovery.example.org/fhir/CodeSystem/crs-task-type|identity-review")
	if len(tasks) != 1 || !strings.Contains(mappingtest.JSON(tasks[0]), "Patient/alice") || !strings.Contains(mappingtest.JSON(tasks[0]), "two.csv") {
		t.Fatalf("task: %v", tasks)
	}
	if a := e.Search(t, "Patient", "identifier=https://community-recovery.example.org/fhir/Id/la-person/E10000031|LA-2002"); len(a) != 1 {
		t.Fatalf("LA-2002 now names %d Patients", len(a))
	}
}

// TestFileErrors: an empty file, wrong columns and a broken CSV are
// file-level errors; Windows-1252 is refused with the flag to give, or
// converted when asked.
func TestFileErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "", "the file is empty"},
		{"columns", "LA_Code,NHS_Number,Gender,Colour\n", "wrong columns: missing column(s) LA_Person_Unique_Identifier, Ethnicity, Date_of_Birth, Event_Type, Event_Reference, Event_Start_Date; unknown column(s) Colour"},
	} {
		_, _, err := e.importFile(t, tc.name, []byte(tc.data), cld.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	broken := header + "E10000031,9000000009,\"LA-1001,Female\n"
	if _, _, err := e.importFile(t, "broken", []byte(broken), cld.Options{}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("broken quotes: %v", err)
	}
	cp1252 := []byte(header + "E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Assessment,A-1,2026-11-20,,Ren\xe9e's,,\n")
	sum, report, err := e.importFile(t, "cp1252.csv", cp1252, cld.Options{})
	if err != nil || sum.Rejected != 1 || !strings.Contains(report, "--encoding windows-1252") {
		t.Fatalf("Windows-1252 as UTF-8: %v %v\n%s", err, sum, report)
	}
	sum, report, err = e.importFile(t, "cp1252.csv", cp1252, cld.Options{Encoding: mapping.Windows1252})
	if err != nil || sum.Rejected != 0 || sum.Updated != 1 {
		t.Fatalf("Windows-1252 converted: %v %v\n%s", err, sum, report)
	}
}

// TestHalfFailedRerun: a file cut short (as when an import stops half-way)
// and then imported whole completes without duplicates.
func TestHalfFailedRerun(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString(header)
	for i := range 30 {
		fmt.Fprintf(&b, "E10000031,%s,LA-%d,Male,White British,1940-01-01,CV21,Assessment,A-%d,2026-11-20,,,,\n", nhsNumber(i), i, i)
	}
	full := []byte(b.String())
	half := full[:len(full)/2]
	half = half[:bytes.LastIndexByte(half, '\n')+1]
	if _, report, err := e.importFile(t, "people.csv", half, cld.Options{BatchRows: 4}); err != nil {
		t.Fatal(err, report)
	}
	sum, report, err := e.importFile(t, "people.csv", full, cld.Options{BatchRows: 4})
	if err != nil || sum.Rejected != 0 {
		t.Fatal(err, sum, report)
	}
	if n := len(e.Search(t, "Patient", "birthdate=1940-01-01&_count=500")); n != 30 {
		t.Fatalf("%d Patients after the re-run, want 30", n)
	}
	if n := e.Versions(t, "Patient"); n != 31 { // Alice and the 30
		t.Fatalf("%d Patient versions, want 31", n)
	}
}

// nhsNumber makes a valid test NHS number (999 prefix, Modulus 11).
func nhsNumber(i int) string {
	for n := 999000000 + i*7; ; n++ {
		s := fmt.Sprintf("%09d", n)
		sum := 0
		for k := range 9 {
			sum += int(s[k]-'0') * (10 - k)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check != 10 {
			return s + fmt.Sprint(check)
		}
	}
}

// TestLargeFileFlatMemory: a generated file of many rows is read as a
// stream: the heap after it stays far below the file's size (in a dry run,
// so that the test measures the reader and the mapping, not the store).
func TestLargeFileFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	e := newEnv(t)
	const rows = 8000
	var b bytes.Buffer
	b.WriteString(header)
	for i := range rows {
		fmt.Fprintf(&b, "E10000031,,LA-X%d,Female,White British,1941-03-14,CV21,Assessment,A-%d,2026-11-20,,%s,,\n", i, i, strings.Repeat("x", 200))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sum, err := e.importReader(t, "large.csv", bytes.NewReader(b.Bytes()), cld.Options{DryRun: true}, io.Discard)
	if err != nil || sum.Rows != rows {
		t.Fatal(err, sum)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > int64(b.Len())/2 {
		t.Fatalf("heap grew by %d bytes for a %d-byte file", grew, b.Len())
	}
}

// FuzzCLD: any file gives a summary, a report or a file error through the
// whole mapping (in a dry run), never a panic.
func FuzzCLD(f *testing.F) {
	f.Add([]byte(header + "E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21,Service,S-1,2026-11-21,,,Reablement,1-000000001\n"))
	f.Add([]byte(header + "E10000031,,LA-1,woman,Not stated,01/02/1940,CV21 1AA,Review,R-1,2026-12-01,2026-11-01,NFA - Deceased,,\n"))
	f.Add([]byte(header + "E10000031,999,LA,,,,,,,,,,,\n,,,,\n"))
	f.Add([]byte("LA_Code\n"))
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = e.importFile(t, "fuzz.csv", data, cld.Options{DryRun: true})
	})
}
