package mllp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/mapping/adt"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// a01 is the benchmarks' message: a new person and admission each.
const a01 = "MSH|^~\\&|PAS|RR801|CRS|CRS|20261129101500||ADT^A01|B%d|P|2.4\rEVN|A01|20261129101500\rPID|1||%s^^^NHS^NH~H%d^^^RR801^PI||SMITH^JOHN||19450312|M\rPV1|1|I|WARD 7||||||||||||||||BV%d\r"

// BenchmarkADTOverMLLP sends A01s over one connection and waits for each ACK:
// stored through the engine (strict profiles, policy, audit) before the ACK,
// on SQLite without fsync (synchronous=NORMAL) as mappingtest opens it.
func BenchmarkADTOverMLLP(b *testing.B) { benchMLLP(b, 1, sqlite.Options{NoSync: true}) }

// BenchmarkADTOverMLLP8: the same over 8 connections at once.
func BenchmarkADTOverMLLP8(b *testing.B) { benchMLLP(b, 8, sqlite.Options{NoSync: true}) }

// BenchmarkADTOverMLLPDurable: one connection, wired as crs serve runs (audit
// journal): each message's commit synced (synchronous=FULL) before its ACK;
// its lookups run inside that transaction, audited with its writes.
func BenchmarkADTOverMLLPDurable(b *testing.B) { benchMLLP(b, 1, sqlite.Options{}) }

// BenchmarkADTOverMLLP8Durable: 8 connections, as crs serve runs (the SQLite
// writer groups the commits of concurrent messages).
func BenchmarkADTOverMLLP8Durable(b *testing.B) { benchMLLP(b, 8, sqlite.Options{}) }

// a02 moves the person of a01 i to another ward.
const a02 = "MSH|^~\\&|PAS|RR801|CRS|CRS|20261130090000||ADT^A02|T%d|P|2.4\rEVN|A02|20261130090000\rPID|1||%s^^^NHS^NH~H%d^^^RR801^PI||SMITH^JOHN||19450312|M\rPV1|1|I|WARD %d||||||||||||||||BV%d\r"

// BenchmarkADTOverMLLPKnown: the usual traffic — messages about people
// already admitted (A02 transfers of people the A01s before the timer
// admitted), one connection, without fsync.
func BenchmarkADTOverMLLPKnown(b *testing.B) { benchMLLPKnown(b, 1, sqlite.Options{NoSync: true}) }

// BenchmarkADTOverMLLPKnown8: the same over 8 connections.
func BenchmarkADTOverMLLPKnown8(b *testing.B) { benchMLLPKnown(b, 8, sqlite.Options{NoSync: true}) }

func benchMLLPKnown(b *testing.B, conns int, opt sqlite.Options) {
	benchMLLPWith(b, conns, opt, func(i int) string { return fmt.Sprintf(a01, i, nhsNumber(i), i, i) },
		func(i int) string { return fmt.Sprintf(a02, i, nhsNumber(i), i, i%20, i) })
}

func benchMLLP(b *testing.B, conns int, opt sqlite.Options) {
	benchMLLPWith(b, conns, opt, nil, func(i int) string { return fmt.Sprintf(a01, i, nhsNumber(i), i, i) })
}

// benchMLLPWith sends setup(i) for every i before the timer (when not nil),
// then timed(i), over conns connections, each message waiting for its ACK.
func benchMLLPWith(b *testing.B, conns int, opt sqlite.Options, setup, timed func(i int) string) {
	// Durable (synced commits) is crs serve's configuration, audit journal
	// included; without fsync, the importers' test bench.
	// Commits are counted to show how many messages share one (group commit).
	var commits atomic.Int64
	opt.OnCommit = func(int, time.Duration, error) { commits.Add(1) }
	newEnv := mappingtest.NewWith
	if !opt.NoSync {
		newEnv = mappingtest.NewServing
	}
	env := newEnv(b, "../adt/testdata/fixtures.json", opt)
	im := &adt.Importer{Engine: env.Engine, Config: adt.Config{Facilities: map[string]string{"RR801": "RR8"}, Base: profiles.DefaultCanonicalBase, Profiles: env.Profiles}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Handler: func(ctx context.Context, msg []byte) []byte { ack, _ := im.Process(ctx, msg); return ack }}
	go s.Serve(ln)
	defer s.Close()
	clients := make([]net.Conn, conns)
	for c := range clients {
		if clients[c], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
		defer clients[c].Close()
	}
	readers := make([]*bufio.Reader, conns)
	for c := range clients {
		readers[c] = bufio.NewReader(clients[c])
	}
	run := func(msg func(i int) string) {
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for c := range clients {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for i := c; i < b.N; i += conns {
					if err := WriteFrame(clients[c], []byte(msg(i))); err != nil {
						errs <- err
						return
					}
					ack, err := ReadFrame(readers[c], DefaultMaxMessage, nil)
					if err != nil || !bytes.Contains(ack, []byte("MSA|AA|")) {
						errs <- fmt.Errorf("ACK %q %v", ack, err)
						return
					}
				}
			}(c)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	if setup != nil {
		run(setup)
	}
	b.ResetTimer()
	cpu, before := cpuTime(), commits.Load()
	run(timed)
	reportRates(b, cpu)
	// Every SQLite commit while the messages ran: theirs, and the audit
	// journal's materialiser's.
	b.ReportMetric(float64(commits.Load()-before)/float64(b.N), "commits/msg")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRates reports messages per second of wall time, and the process's
// CPU time per message since cpu (every goroutine: client, listener, engine,
// SQLite writer, audit journal and materialiser), which depends less on the
// machine's load than the rate does.
func reportRates(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/msg")
}

// BenchmarkRawStoreWrite is the baseline: what an A01 stores (a Patient, an
// Encounter, a Provenance, an AuditEvent), written straight to the store in
// one transaction per message with its index values, no engine, on one
// goroutine and without fsync as BenchmarkADTOverMLLP.
func BenchmarkRawStoreWrite(b *testing.B) { benchRaw(b, 1, sqlite.Options{NoSync: true}) }

// BenchmarkRawStoreWrite8: the same from 8 goroutines.
func BenchmarkRawStoreWrite8(b *testing.B) { benchRaw(b, 8, sqlite.Options{NoSync: true}) }

// BenchmarkRawStoreWriteDurable: one goroutine, synced commits.
func BenchmarkRawStoreWriteDurable(b *testing.B) { benchRaw(b, 1, sqlite.Options{}) }

// BenchmarkRawStoreWrite8Durable: 8 goroutines, synced (grouped) commits.
func BenchmarkRawStoreWrite8Durable(b *testing.B) { benchRaw(b, 8, sqlite.Options{}) }

func benchRaw(b *testing.B, workers int, opt sqlite.Options) {
	st, err := sqlite.Open(b.TempDir()+"/crs.db", opt)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	params, err := search.New()
	if err != nil {
		b.Fatal(err)
	}
	version := func(rt, id string, obj fhir.Object) (store.Version, []fhir.IndexValue) {
		obj["id"] = id
		obj["meta"] = map[string]any{"versionId": "1", "lastUpdated": time.Now().UTC().Format(time.RFC3339Nano)}
		index, err := params.Extract(rt, obj)
		if err != nil {
			b.Fatal(err)
		}
		body, err := fhir.Marshal(obj)
		if err != nil {
			b.Fatal(err)
		}
		return store.Version{Type: rt, ID: id, VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: body}, index
	}
	b.ResetTimer()
	cpu := cpuTime()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < b.N; i += workers {
				p := fmt.Sprint("p", i)
				err := st.Write(context.Background(), func(tx store.Tx) error {
					for _, r := range []struct {
						rt, id string
						obj    fhir.Object
					}{
						{"Patient", p, fhir.Object{"resourceType": "Patient", "identifier": []any{map[string]any{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhsNumber(i)},
							map[string]any{"system": profiles.DefaultCanonicalBase + "/Id/hospital-number/RR8", "value": fmt.Sprint("H", i)}},
							"name": []any{map[string]any{"use": "official", "family": "SMITH", "given": []any{"JOHN"}}}, "gender": "male", "birthDate": "1945-03-12"}},
						{"Encounter", fmt.Sprint("e", i), fhir.Object{"resourceType": "Encounter", "status": "in-progress", "identifier": []any{map[string]any{"system": profiles.DefaultCanonicalBase + "/Id/hospital-visit-number/RR8", "value": fmt.Sprint("BV", i)}},
							"class": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}, "subject": map[string]any{"reference": "Patient/" + p},
							"serviceProvider": map[string]any{"reference": "Organization/trust"}, "location": []any{map[string]any{"location": map[string]any{"display": "WARD 7"}}}, "period": map[string]any{"start": "2026-11-29T10:15:00Z"}}},
						{"Provenance", fmt.Sprint("v", i), fhir.Object{"resourceType": "Provenance", "target": []any{map[string]any{"reference": "Patient/" + p}, map[string]any{"reference": fmt.Sprint("Encounter/e", i)}},
							"recorded": "2026-11-29T10:15:00Z", "agent": []any{map[string]any{"who": map[string]any{"reference": "Organization/trust"}}},
							"entity": []any{map[string]any{"role": "source", "what": map[string]any{"identifier": map[string]any{"system": profiles.DefaultCanonicalBase + "/Id/hl7v2-message/RR8", "value": fmt.Sprint("B", i)}}}}}},
						{"AuditEvent", fmt.Sprint("a", i), fhir.Object{"resourceType": "AuditEvent", "type": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
							"recorded": "2026-11-29T10:15:00Z", "agent": []any{map[string]any{"requestor": true, "who": map[string]any{"display": "hl7v2-RR8"}}},
							"source": map[string]any{"observer": map[string]any{"display": "crs"}}, "entity": []any{map[string]any{"what": map[string]any{"reference": "Patient/" + p}}}}},
					} {
						v, index := version(r.rt, r.id, r.obj)
						if err := tx.Put(context.Background(), v, index); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	reportRates(b, cpu)
}

// BenchmarkSyncedWrite is the disk's floor under a durable ACK over one
// connection: one writer appending 4 KiB and waiting for fdatasync, as each
// message's commit must before its ACK (SQLite's WAL commit syncs once).
func BenchmarkSyncedWrite(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "synced"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.WriteAt(page, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "syncs/s")
}
