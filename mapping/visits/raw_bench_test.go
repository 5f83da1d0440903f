package visits_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/mapping/mappingtest"
	"crs/mapping/visits"
)

// BenchmarkRawVisitWrite is the visits' baseline: the Encounter and the
// Provenance that the import stores for one visit row (taken from a real
// import of one row), each row's pair with its own ids and visit number,
// written straight into the store in batches of 200 with their search values
// (the engine's registry: R4's parameters and the pathway's),
// and nothing else (no CSV, mapping, look-ups, validation, policy or audit).
func BenchmarkRawVisitWrite(b *testing.B) {
	e := newEnv(b)
	one := "Visit_ID,Client_Reference,NHS_Number,Carer_IDs,Planned_Start,Actual_Start,Actual_End,Status\n" +
		"RAW-1,C-77,9000000009,K12,2026-11-22 08:00,2026-11-22 08:05,2026-11-22 08:34,Delivered\n"
	if sum, report, err := e.importFile(b, "bench.csv", []byte(one), visits.Options{}); err != nil || sum.Created != 1 {
		b.Fatal(err, sum, report)
	}
	encs := e.Search(b, "Encounter", "identifier=RAW-1")
	if len(encs) != 1 {
		b.Fatalf("encounters: %v", encs)
	}
	encID := encs[0]["id"].(string)
	provs := e.Search(b, "Provenance", "target=Encounter/"+encID)
	if len(provs) != 1 {
		b.Fatalf("provenances: %v", provs)
	}
	encBody, _ := json.Marshal(encs[0])
	provBody, _ := json.Marshal(provs[0])
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "crs.db"), sqlite.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	params, err := e.Profiles.SearchRegistry() // the engine's: R4's parameters and the pathway's
	if err != nil {
		b.Fatal(err)
	}
	const rows = 1000
	ctx := context.Background()
	b.ResetTimer()
	start, cpu0 := time.Now(), mappingtest.CPUTime()
	for i := 0; i < b.N; i++ {
		for batch := 0; batch < rows; batch += 200 {
			err := st.Write(ctx, func(tx store.Tx) error {
				for r := batch; r < batch+200; r++ {
					enc, prov := fhir.NewUUID(), fhir.NewUUID()
					visit := fmt.Sprintf("RAW-%d-%d", i, r)
					bodies := []string{
						strings.ReplaceAll(strings.ReplaceAll(string(encBody), encID, enc), `"RAW-1"`, `"`+visit+`"`),
						strings.ReplaceAll(strings.ReplaceAll(string(provBody), provs[0]["id"].(string), prov), encID, enc),
					}
					for _, body := range bodies {
						if err := mappingtest.PutFirstVersion(ctx, tx, params, []byte(body)); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	mappingtest.ReportRate(b, b.N*rows, start, cpu0)
}
