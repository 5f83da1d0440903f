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

// BenchmarkRawVisitWrite is the visits' baseline: the resources the import
// stores for its visit rows (taken from a real import of one row): each
// row's Encounter with its own id, visit number and line (meta.source), and
// per batch of 500 rows (the import's) one Provenance naming the batch's
// Encounters, written straight into the store with their search values (the
// engine's registry: R4's parameters and the pathway's), and nothing else
// (no CSV, mapping, look-ups, validation, policy or audit). Until round 7 it
// wrote a Provenance per row in batches of 200, as the import then did.
func BenchmarkRawVisitWrite(b *testing.B) {
	e := newEnv(b)
	encs := []map[string]any{e.importOne(b, "bench.csv", "RAW-1")}
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
	oneTarget := `[{"reference":"Encounter/` + encID + `"}]`
	if !strings.Contains(string(provBody), oneTarget) || !strings.Contains(string(encBody), "bench.csv#line=2") {
		b.Fatalf("the import's resources are not as the baseline expects:\n%s\n%s", encBody, provBody)
	}
	const rows, batchRows = 1000, 500
	ctx := context.Background()
	b.ResetTimer()
	start, cpu0 := time.Now(), mappingtest.CPUTime()
	for i := 0; i < b.N; i++ {
		for batch := 0; batch < rows; batch += batchRows {
			err := st.Write(ctx, func(tx store.Tx) error {
				targets := make([]string, 0, batchRows)
				for r := batch; r < batch+batchRows; r++ {
					enc := fhir.NewUUID()
					visit := fmt.Sprintf("RAW-%d-%d", i, r)
					body := strings.ReplaceAll(strings.ReplaceAll(string(encBody), encID, enc), `"RAW-1"`, `"`+visit+`"`)
					body = strings.Replace(body, "bench.csv#line=2", fmt.Sprintf("bench.csv#line=%d", r+2), 1)
					if err := mappingtest.PutFirstVersion(ctx, tx, params, []byte(body)); err != nil {
						return err
					}
					targets = append(targets, `{"reference":"Encounter/`+enc+`"}`)
				}
				prov := strings.ReplaceAll(string(provBody), provs[0]["id"].(string), fhir.NewUUID())
				prov = strings.Replace(prov, oneTarget, "["+strings.Join(targets, ",")+"]", 1)
				return mappingtest.PutFirstVersion(ctx, tx, params, []byte(prov))
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	mappingtest.ReportRate(b, b.N*rows, start, cpu0)
}

// importOne imports one delivered visit of Alice's (visit id visit, from
// file) and returns its Encounter as stored.
func (e *env) importOne(t testing.TB, file, visit string) map[string]any {
	t.Helper()
	one := "Visit_ID,Client_Reference,NHS_Number,Carer_IDs,Planned_Start,Actual_Start,Actual_End,Status\n" +
		visit + ",C-77,9000000009,K12,2026-11-22 08:00,2026-11-22 08:05,2026-11-22 08:34,Delivered\n"
	if sum, report, err := e.importFile(t, file, []byte(one), visits.Options{}); err != nil || sum.Created != 1 {
		t.Fatal(err, sum, report)
	}
	encs := e.Search(t, "Encounter", "identifier="+visit)
	if len(encs) != 1 {
		t.Fatalf("encounters: %v", encs)
	}
	return encs[0]
}
