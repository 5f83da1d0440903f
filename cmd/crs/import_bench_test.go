package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/mapping"
	"crs/mapping/cld"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// BenchmarkCLDImportHTTP: CLD rows posted as transaction Bundles to a running
// crs over HTTP (loopback, strict profiles, audit; development mode, so no
// token), each row a Patient and its Provenance.
func BenchmarkCLDImportHTTP(b *testing.B) {
	const rows = 1000
	m := &Main{Config: Config{Addr: "127.0.0.1:0", Store: "sqlite:" + filepath.Join(b.TempDir(), "crs.db"), MaxBodyBytes: 8 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 500, ProfileEnforcement: "strict"},
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr() + "/fhir"
	fixtures, err := os.ReadFile("../../mapping/cld/testdata/fixtures.json")
	if err != nil {
		b.Fatal(err)
	}
	if status, body := postBody(b, base, string(fixtures)); status != 200 {
		b.Fatalf("fixtures: %d %s", status, body)
	}
	prof, err := profiles.Load("")
	if err != nil {
		b.Fatal(err)
	}
	door := &mapping.HTTPDoor{Base: base}
	org, err := mapping.FindOrganization(context.Background(), door, "WCC01")
	if err != nil {
		b.Fatal(err)
	}
	files := make([]string, b.N)
	for i := range files {
		var s strings.Builder
		s.WriteString("LA_Code,NHS_Number,LA_Person_Unique_Identifier,Gender,Ethnicity,Date_of_Birth,Postcode,Event_Type,Event_Reference,Event_Start_Date\n")
		for r := 0; r < rows; r++ {
			n := i*rows + r
			fmt.Fprintf(&s, "E10000031,%s,LA-H%d,Female,White British,1941-03-14,CV21 1AA,Assessment,H-%d,2026-11-20\n", benchNHS(n), n, n)
		}
		files[i] = s.String()
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), mappingtest.CPUTime()
	for i := 0; i < b.N; i++ {
		run := &mapping.Run{ID: "bench", Source: "cld", File: "bench.csv", Org: org, ODS: "WCC01", Time: time.Now(), Base: prof.CanonicalBase(), Profiles: prof}
		rep := mapping.NewReport(nil)
		if err := cld.Import(context.Background(), door, run, strings.NewReader(files[i]), cld.Options{LACode: "E10000031"}, rep); err != nil || rep.Created != rows {
			b.Fatal(err, rep.Summary)
		}
	}
	mappingtest.ReportRate(b, b.N*rows, start, cpu0) // importer and server: one process
}

// benchNHS makes a valid test NHS number (999 prefix, Modulus 11).
func benchNHS(i int) string {
	for n := 999000000 + i*7; ; n++ {
		s := fmt.Sprintf("%09d", n)
		sum := 0
		for k := range 9 {
			sum += int(s[k]-'0') * (10 - k)
		}
		if check := (11 - sum%11) % 11; check != 10 {
			return s + fmt.Sprint(check)
		}
	}
}
