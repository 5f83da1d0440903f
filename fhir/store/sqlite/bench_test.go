package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"crs/fhir"
	fhirsearch "crs/fhir/search"
	"crs/fhir/store"
)

// benchResource is the R4 ServiceRequest example used by every store benchmark.
func benchResource(b *testing.B) (fhir.Object, []fhir.IndexValue) {
	data, err := os.ReadFile("../../../testdata/r4/examples/ServiceRequest-di.json")
	if err != nil {
		b.Fatal(err)
	}
	obj, err := fhir.Parse(data, fhir.DefaultLimits)
	if err != nil {
		b.Fatal(err)
	}
	index, err := fhirsearch.Default().Extract("ServiceRequest", obj)
	if err != nil {
		b.Fatal(err)
	}
	return obj, index
}

func benchVersion(b *testing.B, obj fhir.Object, id string) store.Version {
	obj["id"] = id
	body, _ := fhir.Marshal(obj)
	return store.Version{Type: "ServiceRequest", ID: id, VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: body}
}

// BenchmarkCreate: durable creates from 8 goroutines (group commit).
func BenchmarkCreate(b *testing.B) { benchmarkCreate(b, Options{}) }

// BenchmarkCreateNoSync: the same with synchronous=NORMAL (survives kill -9,
// not power loss), to show what fsync costs.
func BenchmarkCreateNoSync(b *testing.B) { benchmarkCreate(b, Options{NoSync: true}) }

func benchmarkCreate(b *testing.B, opt Options) {
	s, err := Open(filepath.Join(b.TempDir(), "crs.db"), opt)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	obj, index := benchResource(b)
	body := benchVersion(b, obj, "x").Body
	var n atomic.Int64
	ctx := context.Background()
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // 8 goroutines on this 2-core machine
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("c%d", n.Add(1))
			v := store.Version{Type: "ServiceRequest", ID: id, VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: body}
			if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, index) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/create")
	b.ReportMetric(float64(s.writes.Load())/float64(max(1, s.commits.Load())), "writes/commit")
	b.ReportMetric(float64(s.execNanos.Load())/1000/float64(max(1, s.writes.Load())), "exec-µs/write")
	b.ReportMetric(float64(s.commitNanos.Load())/1000/float64(max(1, s.commits.Load())), "µs/commit")
}

// BenchmarkRead: reads by id from 8 goroutines.
func BenchmarkRead(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "crs.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	obj, index := benchResource(b)
	ctx := context.Background()
	const N = 2000
	err = s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < N; i++ {
			if err := tx.Put(ctx, benchVersion(b, obj, fmt.Sprintf("r%d", i)), index); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // 8 goroutines on this 2-core machine
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Read(ctx, "ServiceRequest", fmt.Sprintf("r%d", n.Add(1)%N)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}

// BenchmarkRawInsert is the baseline: the same version row and index rows
// inserted with plain statements, one durable transaction per resource, from one
// goroutine, with no store logic at all.
func BenchmarkRawInsert(b *testing.B) {
	path := filepath.Join(b.TempDir(), "raw.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE versions (seq INTEGER PRIMARY KEY, type TEXT, id TEXT, vid INTEGER, body BLOB)`,
		`CREATE TABLE idx (rid INTEGER, param TEXT, a TEXT, b TEXT)`,
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	obj, index := benchResource(b)
	body := benchVersion(b, obj, "x").Body
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		res, err := tx.Exec(`INSERT INTO versions (type, id, vid, body) VALUES (?, ?, 1, ?)`, "ServiceRequest", fmt.Sprint(i), body)
		if err != nil {
			b.Fatal(err)
		}
		rid, _ := res.LastInsertId()
		for _, iv := range index {
			if _, err := tx.Exec(`INSERT INTO idx VALUES (?, ?, ?, ?)`, rid, iv.Param, iv.System+iv.Str, iv.Code+iv.RefID); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkBatchScattered stores resources 500 to a Write (as an import or
// the AuditEvent materialiser does) whose search values are spread over many
// distinct codes and references, so that the index B-trees outgrow SQLite's
// page cache as a real database's do and each batch's rows land all over
// them. Run it with a fixed -benchtime (e.g. 30000x): the cost per create
// grows with the database.
func BenchmarkBatchScattered(b *testing.B) {
	s := openTemp(b)
	obj, index := benchResource(b)
	body := benchVersion(b, obj, "x").Body
	ctx := context.Background()
	rnd := rand.New(rand.NewSource(1))
	const batch = 500
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i += batch {
		err := s.Write(ctx, func(tx store.Tx) error {
			for j := i; j < min(i+batch, b.N); j++ {
				ivs := slices.Clone(index)
				for k := range ivs {
					v := strconv.Itoa(rnd.Intn(200000))
					switch ivs[k].Type {
					case fhir.TypeToken:
						ivs[k].Code += v
					case fhir.TypeReference:
						ivs[k].RefID += v
					case fhir.TypeString:
						ivs[k].Str += v
					}
				}
				v := store.Version{Type: "ServiceRequest", ID: "s" + strconv.Itoa(j), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: body}
				if err := tx.Put(ctx, v, ivs); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/create")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkUpdate: durable updates from 8 goroutines (group commit), each
// cycling through 50 resources of its own (the first pass creates them);
// each version changes the status, as most updates change a value or two.
func BenchmarkUpdate(b *testing.B) {
	s := openTemp(b)
	obj, index := benchResource(b)
	body := benchVersion(b, obj, "x").Body
	status := slices.IndexFunc(index, func(iv fhir.IndexValue) bool { return iv.Param == "status" })
	if status < 0 {
		b.Fatal("no status value")
	}
	onHold := slices.Clone(index)
	onHold[status].Code = "on-hold"
	var g atomic.Int64
	ctx := context.Background()
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // 8 goroutines on this 2-core machine
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		prefix := fmt.Sprintf("u%d-", g.Add(1))
		vids := make([]int, 50)
		for i := 0; pb.Next(); i = (i + 1) % len(vids) {
			vids[i]++
			v := store.Version{Type: "ServiceRequest", ID: prefix + strconv.Itoa(i), VersionID: vids[i], LastUpdated: time.Now(), Method: "PUT", Body: body}
			ivs := index
			if vids[i]%2 == 0 {
				ivs = onHold
			}
			if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, ivs) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/update")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(s.writes.Load())/float64(max(1, s.commits.Load())), "writes/commit")
}
