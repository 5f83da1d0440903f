#!/usr/bin/env bash
# make bench: the figures the README quotes. Medians over several runs; the HTTP
# runs talk only to a crs started here on 127.0.0.1 and stop by themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
PORT=${PORT:-18080}
EXAMPLE=${EXAMPLE:-testdata/r4/examples/ServiceRequest-di.json}

# median NAME METRIC: median of a custom metric over the lines of one benchmark
median() {
  grep -E "^$1(-[0-9]+)?[[:space:]]" | awk -v m="$2" '{for(i=1;i<NF;i++) if($(i+1)==m) print $i}' |
    sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else print a[int((NR+1)/2)]}'
}

echo "== base validation, one core (ServiceRequest examples), $COUNT runs"
go test -run '^$' -bench 'BenchmarkValidateServiceRequest$' -benchtime 2s -cpu 1 -count "$COUNT" ./fhir/validate/ | tee /tmp/crs-bench-validate.txt
val=$(median BenchmarkValidateServiceRequest resources/s </tmp/crs-bench-validate.txt)

echo "== full validation (base + pathway profile + invariants), one core (profile examples), $COUNT runs"
go test -run '^$' -bench 'BenchmarkFullValidation$' -benchtime 2s -cpu 1 -count "$COUNT" ./profiles/ | tee /tmp/crs-bench-profiles.txt
full=$(median BenchmarkFullValidation resources/s </tmp/crs-bench-profiles.txt)

echo "== store: raw SQLite inserts vs store creates and reads, $COUNT runs"
go test -run '^$' -bench 'Benchmark(RawInsert|Create|CreateNoSync|Read)$' -benchtime 2s -count "$COUNT" ./fhir/store/sqlite/ | tee /tmp/crs-bench-store.txt
raw=$(median BenchmarkRawInsert rows/s </tmp/crs-bench-store.txt)
screate=$(median BenchmarkCreate creates/s </tmp/crs-bench-store.txt)
sread=$(median BenchmarkRead reads/s </tmp/crs-bench-store.txt)

echo "== HTTP, concurrency 8, $COUNT runs of 5 s each (R4 example bodies: profile enforcement declared)"
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/httpload" ./tools/httpload
./bin/crs serve --addr "127.0.0.1:$PORT" --store "sqlite:$dir/crs.db" --profile-enforcement declared 2>"$dir/crs.log" &
pid=$!
for i in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
"$dir/httpload" -base "http://127.0.0.1:$PORT/fhir" -mode create -c 8 -d 5s -runs "$COUNT" -body "$EXAMPLE" | tee "$dir/create.txt"
"$dir/httpload" -base "http://127.0.0.1:$PORT/fhir" -mode read -c 8 -d 5s -runs "$COUNT" -body "$EXAMPLE" | tee "$dir/read.txt"
"$dir/httpload" -base "http://127.0.0.1:$PORT/fhir" -mode transaction -c 8 -d 5s -runs "$COUNT" | tee "$dir/transaction.txt"
htx=$(awk '/^median/ {print $(NF-1)}' "$dir/transaction.txt")
hcreate=$(awk '/^median/ {print $(NF-1)}' "$dir/create.txt")
hread=$(awk '/^median/ {print $(NF-1)}' "$dir/read.txt")

echo "== access control: token verification + policy per request (warm JWKS), and reads with auth off / on, $COUNT runs"
make -s oidc-provider
go test -run '^$' -bench 'BenchmarkTokenAndPolicy$|BenchmarkReadAuth' -benchtime 3s -count "$COUNT" ./cmd/crs/ | tee /tmp/crs-bench-auth.txt
tokpol=$(median BenchmarkTokenAndPolicy µs/request </tmp/crs-bench-auth.txt)
readoff=$(median BenchmarkReadAuth/off reads/s </tmp/crs-bench-auth.txt)
readon=$(median BenchmarkReadAuth/on reads/s </tmp/crs-bench-auth.txt)

echo "== audit: reads and creates by the engine, 8 goroutines, durable SQLite, unaudited vs audited in the same run, $COUNT runs"
go test -run '^$' -bench 'BenchmarkAudited(Read|Create)$' -benchtime 2s -count "$COUNT" ./fhir/engine/ | tee /tmp/crs-bench-audit.txt
go test -run '^$' -bench 'BenchmarkJournalAppend$' -benchtime 2s -count "$COUNT" ./audit/ | tee -a /tmp/crs-bench-audit.txt
echo "== audit over HTTP: reads, creates and acute-referral transactions at c=8, audited vs the audit trail off, same run, $COUNT runs"
go test -run '^$' -bench 'BenchmarkHTTPAudit$' -benchtime 3s -count "$COUNT" ./cmd/crs/ | tee /tmp/crs-bench-httpaudit.txt
for m in read create transaction; do
  eval "h_${m}_u=\$(median BenchmarkHTTPAudit/$m/unaudited req/s </tmp/crs-bench-httpaudit.txt)"
  eval "h_${m}_a=\$(median BenchmarkHTTPAudit/$m/audited req/s </tmp/crs-bench-httpaudit.txt)"
done
rdu=$(median BenchmarkAuditedRead/unaudited reads/s </tmp/crs-bench-audit.txt)
rds=$(median BenchmarkAuditedRead/store reads/s </tmp/crs-bench-audit.txt)
rdj=$(median BenchmarkAuditedRead/journal reads/s </tmp/crs-bench-audit.txt)
cru=$(median BenchmarkAuditedCreate/unaudited creates/s </tmp/crs-bench-audit.txt)
cra=$(median BenchmarkAuditedCreate/audited creates/s </tmp/crs-bench-audit.txt)
crj=$(median BenchmarkAuditedCreate/journal creates/s </tmp/crs-bench-audit.txt)
jap=$(median BenchmarkJournalAppend appends/s </tmp/crs-bench-audit.txt)
echo "== imports: CLD and visit rows through the engine (strict profiles, policy, audit, a Provenance each), in-process and over HTTP, vs raw store writes of the same resources, $COUNT runs"
go test -run '^$' -bench 'BenchmarkCLDImport$|BenchmarkRawStoreWrite$' -benchtime 3x -count "$COUNT" ./mapping/cld/ | tee /tmp/crs-bench-cld.txt
cldrows=$(median BenchmarkCLDImport rows/s </tmp/crs-bench-cld.txt)
rawrows=$(median BenchmarkRawStoreWrite rows/s </tmp/crs-bench-cld.txt)
cldcpu=$(median BenchmarkCLDImport cpu-µs/row </tmp/crs-bench-cld.txt)
rawcpu=$(median BenchmarkRawStoreWrite cpu-µs/row </tmp/crs-bench-cld.txt)
go test -run '^$' -bench 'BenchmarkVisitsImport$|BenchmarkRawVisitWrite$' -benchtime 3x -count "$COUNT" ./mapping/visits/ | tee /tmp/crs-bench-visits.txt
visitrows=$(median BenchmarkVisitsImport rows/s </tmp/crs-bench-visits.txt)
visitcpu=$(median BenchmarkVisitsImport cpu-µs/row </tmp/crs-bench-visits.txt)
rawvisitcpu=$(median BenchmarkRawVisitWrite cpu-µs/row </tmp/crs-bench-visits.txt)
go test -run '^$' -bench 'BenchmarkCLDImportHTTP$' -benchtime 3x -count "$COUNT" ./cmd/crs/ | tee /tmp/crs-bench-cldhttp.txt
httprows=$(median BenchmarkCLDImportHTTP rows/s </tmp/crs-bench-cldhttp.txt)
echo "== a ${CLD_ROWS:-1000000}-row CLD file streamed through the whole mapping (dry run): peak RSS"
CLD_ROWS=${CLD_ROWS:-1000000} go test -run '^$' -bench 'BenchmarkCLDStreamRSS$' -benchtime 1x -timeout 3h ./mapping/cld/ | tee /tmp/crs-bench-cldrss.txt
rss=$(median BenchmarkCLDStreamRSS MB-peak-RSS </tmp/crs-bench-cldrss.txt)

echo
echo "== summary (medians of $COUNT runs; targets in brackets)"
printf 'base validation, 1 core:        %8s resources/s  [>= 36000]\n' "$val"
printf 'full validation, 1 core:        %8s resources/s  [>= 20000]  (%.2fx base validation)\n' "$full" "$(echo "$full $val" | awk '{print $1/$2}')"
printf 'raw SQLite insert (baseline):   %8s rows/s\n' "$raw"
printf 'store create (parallel):        %8s creates/s  (%.2fx raw)\n' "$screate" "$(echo "$screate $raw" | awk '{print $1/$2}')"
printf 'store read by id (parallel):    %8s reads/s\n' "$sread"
printf 'HTTP durable create, c=8:       %8s req/s  [>= 4750]  (%.2fx raw SQLite insert)\n' "$hcreate" "$(echo "$hcreate $raw" | awk '{print $1/$2}')"
printf 'HTTP read by id, c=8:           %8s req/s  [>= 12000]\n' "$hread"
printf 'HTTP acute-referral tx, c=8:    %8s req/s  [>= 1500]  (Patient + Encounter + ServiceRequest, audited)\n' "$htx"
printf 'token + policy per request:     %8s µs  [<= 50]\n' "$tokpol"
printf 'audited reads, auth off / on:   %8s / %s reads/s  (%.2fx)  [>= 0.80x]\n' "$readoff" "$readon" "$(echo "$readon $readoff" | awk '{print $1/$2}')"
printf 'engine reads, unaudited:        %8s reads/s  (baseline)\n' "$rdu"
printf 'engine reads, audit journal:    %8s reads/s  (%.2fx unaudited)  [>= 0.85x]\n' "$rdj" "$(echo "$rdj $rdu" | awk '{print $1/$2}')"
printf 'engine reads, audit via store:  %8s reads/s  (%.2fx unaudited)\n' "$rds" "$(echo "$rds $rdu" | awk '{print $1/$2}')"
printf 'engine creates, unaudited:      %8s creates/s  (baseline)\n' "$cru"
printf 'engine creates, audited in tx:  %8s creates/s  (%.2fx unaudited)\n' "$cra" "$(echo "$cra $cru" | awk '{print $1/$2}')"
printf 'engine creates, audited, journal (a pending record in tx, as crs serve): %8s creates/s  (%.2fx unaudited)\n' "$crj" "$(echo "$crj $cru" | awk '{print $1/$2}')"
printf 'audit journal appends, c=8:     %8s appends/s  (each durable before it returns)\n' "$jap"
printf 'HTTP reads, c=8, audited:       %8s req/s  [>= 12000]  (%.2fx unaudited, %s req/s)  [>= 0.85x]\n' "$h_read_a" "$(echo "$h_read_a $h_read_u" | awk '{print $1/$2}')" "$h_read_u"
printf 'HTTP creates, c=8, audited:     %8s req/s  [>= 4750]  (%.2fx unaudited, %s req/s)\n' "$h_create_a" "$(echo "$h_create_a $h_create_u" | awk '{print $1/$2}')" "$h_create_u"
printf 'HTTP acute tx, c=8, audited:    %8s req/s  [>= 1500]  (%.2fx unaudited, %s req/s)\n' "$h_transaction_a" "$(echo "$h_transaction_a $h_transaction_u" | awk '{print $1/$2}')" "$h_transaction_u"

echo
echo "== pathway queries on a synthetic region (p50/p95 over 200 runs each), and acute-referral transactions"
for n in ${REGION_SIZES:-10000 100000}; do
  echo "-- region of $n resources"
  # CRS_BENCH_DIR (outside the repository) keeps each size's region database
  # there, built once and reused by later runs (CRS_BENCH_DB).
  CRS_BENCH_DB=${CRS_BENCH_DIR:+$CRS_BENCH_DIR/region-$n.db} CRS_BENCH_RESOURCES=$n go test -run '^$' -bench 'BenchmarkPathwayQueries' -benchtime 50x -timeout 60m ./fhir/engine/ | grep -E 'Benchmark|region' | tee "/tmp/crs-bench-region-$n.txt"
done
echo "-- MongoDB backend on the in-process FerretDB, region of ${FERRET_SIZE:-300} resources, 10 runs per query"
echo "   CORRECTNESS FIXTURE, not a MongoDB figure: FerretDB's SQLite handler scans collections and does not"
echo "   report documents examined. Against a real MongoDB: CRS_BENCH_STORE=mongodb CRS_TEST_MONGODB_URI=mongodb://…"
echo "   (then docs-scanned/query comes from serverStatus metrics.queryExecutor.scannedObjects)."
CRS_BENCH_STORE=ferretdb CRS_BENCH_RESOURCES=${FERRET_SIZE:-300} CRS_BENCH_RUNS=10 go test -v -run '^$' -bench 'BenchmarkPathwayQueries' -benchtime 3x -timeout 30m ./fhir/engine/ |
  grep -E 'ns/op|region:|scanned' | sed 's/^/   /' | tee /tmp/crs-bench-ferretdb.txt
go test -run '^$' -bench 'BenchmarkAcuteReferralTransaction$' -benchtime 3s -count "$COUNT" ./fhir/engine/ | tee /tmp/crs-bench-tx.txt
tx=$(median BenchmarkAcuteReferralTransaction transactions/s </tmp/crs-bench-tx.txt)
printf 'acute-referral transactions, 8 goroutines, durable: %s/s  [>= 1500]\n' "$tx"
sizes=(${REGION_SIZES:-10000 100000})
small=${sizes[0]}; large=${sizes[${#sizes[@]}-1]}
echo "-- p95 at $large resources vs $small (ratio; goal <= 2x, p95 <= 10 ms)"
join <(awk '/p95-ms/ {for(i=1;i<NF;i++) if($(i+1)=="p95-ms") print $1, $i}' "/tmp/crs-bench-region-$small.txt" | sed 's/-[0-9]* / /' | sort) \
     <(awk '/p95-ms/ {for(i=1;i<NF;i++) if($(i+1)=="p95-ms") print $1, $i}' "/tmp/crs-bench-region-$large.txt" | sed 's/-[0-9]* / /' | sort) |
  awk '{printf "%-70s %8.2f ms %8.2f ms  %5.2fx\n", $1, $2, $3, $3/$2}'
printf 'CLD import, in-process:         %8s rows/s  [>= 5000]  (%.2fx a raw store write of the same resources, %s rows/s)\n' "$cldrows" "$(echo "$cldrows $rawrows" | awk '{print $1/$2}')" "$rawrows"
printf '  CPU per row: CLD %s µs, its raw write %s µs\n' "$cldcpu" "$rawcpu"
printf 'visit import, in-process:       %8s rows/s  [>= 10000]  (CPU per row %s µs; a raw write of the same resources %s µs)\n' "$visitrows" "$visitcpu" "$rawvisitcpu"
printf 'CLD import over HTTP:           %8s rows/s  [>= 2000]\n' "$httprows"
printf 'CLD %s rows streamed, peak RSS: %8s MB  [<= 200]\n' "${CLD_ROWS:-1000000}" "$rss"

echo
echo "== measures: \$evaluate-measure over six months with every stratifier, and the MDT page's server time,"
echo "   on the demo region (1,150 episodes) and at 10x (11,500); targets 500 ms / 150 ms, 10x <= 3x those"
for n in ${MEASURE_SIZES:-1150 11500}; do
  CRS_BENCH_EPISODES=$n go test -run '^$' -bench 'BenchmarkEvaluateMeasure|BenchmarkCaseloadPage' -benchtime 3x -count "$COUNT" -timeout 60m ./measures/ |
    grep -E '^Benchmark' | tee "/tmp/crs-bench-measures-$n.txt"
done
echo "== Bulk \$export: every type of a region of ${EXPORT_SIZE:-100000} resources through Engine.ExportType vs raw store pages of the same rows, $COUNT runs"
CRS_BENCH_RESOURCES=${EXPORT_SIZE:-100000} go test -run '^$' -bench 'BenchmarkExport$' -benchtime 3x -count "$COUNT" -timeout 60m ./fhir/engine/ | tee /tmp/crs-bench-export.txt
exe=$(median BenchmarkExport/engine resources/s </tmp/crs-bench-export.txt)
exr=$(median BenchmarkExport/raw-store resources/s </tmp/crs-bench-export.txt)
exh=$(median BenchmarkExport/engine heap-MB </tmp/crs-bench-export.txt)
printf '$export through the engine:     %8s resources/s  [>= 20000]  (%.2fx raw store pages, %s resources/s; heap %s MB)\n' "$exe" "$(echo "$exe $exr" | awk '{print $1/$2}')" "$exr" "$exh"
echo "== HL7 v2: parsing one ITK-style A01 on one core; A01s over 1 and 8 MLLP connections wired as crs serve (each ACK after its synced commit; a message's lookups, writes and AuditEvent in that one transaction), beside a raw synced store write of the same resources (Patient, Encounter, Provenance, AuditEvent) in the same run, $COUNT runs"
go test -run '^$' -bench 'BenchmarkParse$' -benchtime 2s -cpu 1 -count "$COUNT" ./mapping/hl7v2/ | tee /tmp/crs-bench-hl7v2.txt
go test -run '^$' -bench 'BenchmarkADTOverMLLP(8)?Durable$|BenchmarkRawStoreWrite(8)?Durable$' -benchtime 500x -count "$COUNT" ./mapping/mllp/ | tee /tmp/crs-bench-mllp.txt
go test -run '^$' -bench 'BenchmarkSyncedWrite$' -benchtime 2000x -count "$COUNT" ./mapping/mllp/ | tee -a /tmp/crs-bench-mllp.txt
printf 'HL7 v2 parse, one core:         %8s msgs/s  [>= 100000]\n' "$(median BenchmarkParse msgs/s </tmp/crs-bench-hl7v2.txt)"
printf 'ADT over 1 MLLP connection:     %8s msgs/s  [>= 2000]  (%s ms CPU/msg; raw synced store write of the same resources: %s msgs/s, %s ms CPU/msg)\n' "$(median BenchmarkADTOverMLLPDurable msgs/s </tmp/crs-bench-mllp.txt)" "$(median BenchmarkADTOverMLLPDurable cpu-ms/msg </tmp/crs-bench-mllp.txt)" "$(median BenchmarkRawStoreWriteDurable msgs/s </tmp/crs-bench-mllp.txt)" "$(median BenchmarkRawStoreWriteDurable cpu-ms/msg </tmp/crs-bench-mllp.txt)"
printf 'ADT over MLLP, the disk floor:  %8s synced 4 KiB writes/s, one writer (a durable ACK waits for one)\n' "$(median BenchmarkSyncedWrite syncs/s </tmp/crs-bench-mllp.txt)"
printf 'ADT over 8 MLLP connections:    %8s msgs/s  [>= 5000]  (%s SQLite commits/msg; raw synced store write, 8 writers: %s msgs/s)\n' "$(median BenchmarkADTOverMLLP8Durable msgs/s </tmp/crs-bench-mllp.txt)" "$(median BenchmarkADTOverMLLP8Durable commits/msg </tmp/crs-bench-mllp.txt)" "$(median BenchmarkRawStoreWrite8Durable msgs/s </tmp/crs-bench-mllp.txt)"
echo "== Subscriptions: CPU per durable CarePlan update with none, 10,000 per-person filtered, 10,000 of one other provider unfiltered, and the same 10,000 stored off; a change reaching a rest-hook receiver at 1,000 writes/s, $COUNT runs"
go test -run '^$' -bench 'BenchmarkWriteWithSubscriptions' -benchtime 2000x -count "$COUNT" -timeout 60m ./subscriptions/ | tee /tmp/crs-bench-subs.txt
CRS_BENCH_DURABLE=1 CRS_BENCH_RATE=1000 CRS_BENCH_SECONDS=10 go test -run '^$' -bench 'BenchmarkNotificationAtRate$' -benchtime 1x ./subscriptions/ | tee -a /tmp/crs-bench-subs.txt
s0=$(median BenchmarkWriteWithSubscriptions/subscriptions=0 cpu-µs/write </tmp/crs-bench-subs.txt)
for c in per-person=10000 one-provider=10000 stored-off=10000 was-active=10000 groups=10000; do
  sc=$(median "BenchmarkWriteWithSubscriptions/$c" cpu-µs/write </tmp/crs-bench-subs.txt)
  printf 'CarePlan update, %-22s %8s cpu-µs  [<= 1.10x none]  (%.2fx none, %s cpu-µs)\n' "$c:" "$sc" "$(echo "$sc $s0" | awk '{print $1/$2}')" "$s0"
done
echo "== Subscriptions, the same cases interleaved in one process (each case's ratio to none, paired by round; its database's pages)"
CRS_BENCH_ROUNDS=20 CRS_BENCH_WRITES=4000 go test -run '^$' -bench 'BenchmarkSubscriptionWriteCostInterleaved$' -benchtime 1x -timeout 60m ./subscriptions/ | tr '\t' '\n' | grep -E ' (x|pages|cpu-µs/write)-'
echo "== Denormalised keys: CPU per durable create with and without the four keys, $COUNT runs"
go test -run '^$' -bench 'KeysWriteCost/^durable$/^(nokeys|keys)$' -benchtime 4000x -count "$COUNT" ./fhir/store/sqlite/ | tee /tmp/crs-bench-keys.txt
kn=$(median BenchmarkKeysWriteCost/durable/nokeys cpu-µs/create </tmp/crs-bench-keys.txt)
kk=$(median BenchmarkKeysWriteCost/durable/keys cpu-µs/create </tmp/crs-bench-keys.txt)
printf 'create with the keys:           %8s cpu-µs  [<= 1.10x without]  (%.2fx without, %s cpu-µs)\n' "$kk" "$(echo "$kk $kn" | awk '{print $1/$2}')" "$kn"
