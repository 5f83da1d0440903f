package cld_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/mapping/cld"
	"crs/mapping/mappingtest"
)

const benchRows = 1000

// benchFile is a CLD file of benchRows new persons (from person first on),
// each with an assessment event: every row makes a Patient (and each batch
// one Provenance naming its Patients).
func benchFile(first int) []byte {
	var b strings.Builder
	b.WriteString(header)
	for i := first; i < first+benchRows; i++ {
		fmt.Fprintf(&b, "E10000031,%s,LA-B%d,Female,White British,1941-03-14,CV21 1AA,Assessment,B-%d,2026-11-20,,,,\n", nhsNumber(i), i, i)
	}
	return []byte(b.String())
}

// BenchmarkCLDImport: CLD rows into SQLite in-process, through the engine as
// the council (strict profiles, policy, audit), each in a batch's Provenance.
func BenchmarkCLDImport(b *testing.B) {
	e := newEnv(b)
	files := make([][]byte, b.N)
	for i := range files {
		files[i] = benchFile(i * benchRows)
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), mappingtest.CPUTime()
	for i := 0; i < b.N; i++ {
		sum, report, err := e.importFile(b, "bench.csv", files[i], cld.Options{BatchRows: benchBatch()})
		if err != nil || sum.Created != benchRows {
			b.Fatal(err, sum, report)
		}
	}
	mappingtest.ReportRate(b, b.N*benchRows, start, cpu0)
}

// BenchmarkRawStoreWrite is the baseline: the same resources as the import
// (a Patient per row, its row in meta.source, and one Provenance per batch
// naming the batch's Patients) written straight into the store in batches of
// 200 (the import's), with their search values, and nothing else (no parsing,
// matching, validation, policy or audit). Until round 7 it wrote a
// Provenance per row, as the import then did.
func BenchmarkRawStoreWrite(b *testing.B) {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "crs.db"), sqlite.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	params, err := search.New()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	start, cpu0 := time.Now(), mappingtest.CPUTime()
	for i := 0; i < b.N; i++ {
		for batch := 0; batch < benchRows; batch += 200 {
			err := st.Write(ctx, func(tx store.Tx) error {
				targets := make([]string, 0, 200)
				for r := batch; r < batch+200; r++ {
					n := i*benchRows + r
					id := fhir.NewUUID()
					pat := fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"versionId":"1","lastUpdated":"2026-11-29T12:00:00.000Z","source":"https://community-recovery.example.org/fhir/Id/import-source/cld/bench.csv#line=%d"},"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q},{"system":"https://community-recovery.example.org/fhir/Id/la-person/E10000031","value":"LA-B%d"}],"gender":"female","birthDate":"1941-03-14","address":[{"use":"home","postalCode":"CV21"}],"extension":[{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority","valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"E10000031"}}]}`, id, r+2, nhsNumber(n), n)
					if err := mappingtest.PutFirstVersion(ctx, tx, params, []byte(pat)); err != nil {
						return err
					}
					targets = append(targets, `{"reference":"Patient/`+id+`"}`)
				}
				prov := fmt.Sprintf(`{"resourceType":"Provenance","id":%q,"meta":{"versionId":"1","lastUpdated":"2026-11-29T12:00:00.000Z"},"target":[%s],"recorded":"2026-11-29T12:00:00Z","agent":[{"who":{"reference":"Organization/council"}}],"entity":[{"role":"source","what":{"identifier":{"system":"https://community-recovery.example.org/fhir/Id/import-source/cld","value":"bench.csv"}}}]}`, fhir.NewUUID(), strings.Join(targets, ","))
				return mappingtest.PutFirstVersion(ctx, tx, params, []byte(prov))
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	mappingtest.ReportRate(b, b.N*benchRows, start, cpu0)
}

// BenchmarkCLDStreamRSS streams CLD_ROWS generated rows (default 100000; make
// bench gives 1,000,000) through the whole mapping in a dry run — reading,
// translating, duplicate checks, identity lookups through the engine — and
// reports the process's peak resident memory (VmHWM), to show that memory
// stays flat however long the file is.
func BenchmarkCLDStreamRSS(b *testing.B) {
	rows := 100000
	if s := os.Getenv("CLD_ROWS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			rows = n
		}
	}
	e := newEnv(b)
	b.ResetTimer()
	start, cpu0 := time.Now(), mappingtest.CPUTime()
	for i := 0; i < b.N; i++ {
		pr, pw := io.Pipe()
		go func() {
			w := bufio.NewWriter(pw)
			w.WriteString(header)
			for r := 0; r < rows; r++ {
				fmt.Fprintf(w, "E10000031,%s,LA-S%d,Female,White British,1941-03-14,CV21 1AA,Assessment,S-%d,2026-11-20,,,,\n", nhsNumber(r%100000), r, r)
			}
			w.Flush()
			pw.Close()
		}()
		sum, err := e.importReader(b, "stream.csv", pr, cld.Options{DryRun: true, BatchRows: 500}, io.Discard)
		if err != nil || sum.Rows != rows {
			b.Fatal(err, sum)
		}
	}
	mappingtest.ReportRate(b, b.N*rows, start, cpu0)
	b.ReportMetric(float64(peakRSS())/(1<<20), "MB-peak-RSS")
}

// peakRSS is the process's peak resident set size in bytes (Linux), 0 when
// unknown.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchBatch is the rows per transaction of BenchmarkCLDImport: CLD_BATCH,
// or the importer's default (200) when unset. 500 and 1,000 measured no
// better than 200 (2026-11-29, CPU per row within the noise).
func benchBatch() int {
	n, _ := strconv.Atoi(os.Getenv("CLD_BATCH"))
	return n
}
