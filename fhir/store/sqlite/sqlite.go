// Package sqlite is the embedded default store of crs: one SQLite file (pure-Go
// driver modernc.org/sqlite) in WAL mode with synchronous=FULL, so that an
// acknowledged write survives kill -9 and power loss.
//
// Schema: versions holds every version (deletes are tombstones) with a global
// write sequence; current points at the newest version of each resource and gives
// it a stable integer rid; idx_token, idx_string, idx_date, idx_number,
// idx_quantity, idx_reference and idx_uri hold the search values of current
// versions, keyed by rid. Searches are translated from fhir.Query into SQL with
// bound parameters only.
//
// Writes go through one writer goroutine that batches whatever Write calls are
// queued into one SQLite transaction, each in its own SAVEPOINT, and commits once:
// group commit, one fsync for the batch. A failing call rolls back only its
// savepoint. Reads use a pool of connections that WAL lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	sqlitedriver "modernc.org/sqlite" // the driver

	"crs/fhir"
	"crs/fhir/store"
)

// DefaultMmapBytes is the read connections' default mmap_size: 192 MiB. At
// 1M resources a 1 GiB map made the query process 1.1 GB resident (26 MB of
// it its own memory); 192 MiB kept it at 250 MB with the pathway queries as
// fast (128 MiB: 184 MB, two queries up to 1.7x slower at p95; README,
// "Current figures").
const DefaultMmapBytes = 192 << 20

// Options tune the store. The zero value is the durable default.
type Options struct {
	ReadConns int  // read connections; default 2×GOMAXPROCS (at least 4)
	MaxBatch  int  // most Write calls in one commit; default 64
	NoSync    bool // synchronous=NORMAL: survives kill -9, not power loss (benchmarks only)
	// MmapBytes is how much of the database file the read connections map
	// into memory (SQLite's mmap_size); 0 means DefaultMmapBytes, a negative
	// value maps nothing. Mapped pages are read without a copy, and count in
	// the process's resident memory (as clean file pages the kernel may drop).
	MmapBytes int64
	// OnCommit, when set, is called by the writer after each batch's COMMIT
	// with the number of write calls in the batch, how long the COMMIT (and
	// its fsync) took, and its error (for metrics; it must not block).
	OnCommit func(writes int, d time.Duration, err error)
	// NoKeys keeps no denormalised keys (keys.go): searches resolve every
	// chain by its joins. For measuring what the keys cost; a later Open
	// without it rebuilds them.
	NoKeys bool
	// PageSize is the page size, in bytes, of a database Open creates: a
	// power of two from 512 to 65536; 0 means DefaultPageSize. An existing
	// database keeps the page size it was made with (pagesize.go).
	PageSize int
}

// Store is the SQLite backend.
type Store struct {
	read     *sql.DB
	write    *sql.DB
	reqs     chan *writeReq
	done     chan struct{}
	closed   chan struct{}
	max      int
	onCommit func(writes int, d time.Duration, err error)
	stmts    readStmts
	wstmts   writeStmts
	rq       *stmtCache // the read pool's searches, prepared (stmtcache.go)
	wq       *stmtCache // the writer's searches and transaction control (writer goroutine only)
	walkFrom int        // the driving set size from which a page walks (walk.go); tests lower it
	keys     keySet
	cache    map[string][]tokenRow // the committed values of key targets (writer goroutine only)
	dataVer  int64                 // the pager's data version when the writer's last transaction ended (dataversion.go)
	dataOK   bool                  // dataVer was read
	stats    *sampleCache          // the read pool's planners' large counts (samplecache.go)

	commits, writes        atomic.Int64 // for the writes-per-commit figure
	execNanos, commitNanos atomic.Int64
}

var _ store.Store = (*Store)(nil)

type writeReq struct {
	ctx  context.Context
	fn   func(store.Tx) error
	done chan error
}

const schemaVersion = 1

var schema = []string{
	`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS versions (
		seq INTEGER PRIMARY KEY,
		type TEXT NOT NULL, id TEXT NOT NULL, vid INTEGER NOT NULL,
		ts INTEGER NOT NULL, deleted INTEGER NOT NULL, method TEXT NOT NULL, body BLOB,
		UNIQUE (type, id, vid))`,
	`CREATE INDEX IF NOT EXISTS versions_type_seq ON versions (type, seq)`,
	`CREATE TABLE IF NOT EXISTS current (
		rid INTEGER PRIMARY KEY,
		type TEXT NOT NULL, id TEXT NOT NULL, vid INTEGER NOT NULL, seq INTEGER NOT NULL, deleted INTEGER NOT NULL,
		UNIQUE (type, id))`,
	// A walk in row id order reads one type's live rows in rid order (walk.go).
	// Partial on rid > 0 as idx_date_hi is, for the same reason.
	`CREATE INDEX IF NOT EXISTS current_type ON current (type, deleted) WHERE rid > 0`,
	// Index tables are clustered on their lookup key (WITHOUT ROWID), so each value
	// costs two b-tree inserts: the table itself and the rid index used to replace
	// a resource's values on update.
	`CREATE TABLE IF NOT EXISTS idx_token (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL,
		PRIMARY KEY (type, param, code, system, rid, text)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS idx_token_rid ON idx_token (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_string (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, str TEXT NOT NULL, exact TEXT NOT NULL,
		PRIMARY KEY (type, param, str, rid, exact)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS idx_string_rid ON idx_string (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_date (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
		PRIMARY KEY (type, param, lo, hi, rid)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS idx_date_rid ON idx_date (rid)`,
	// A descending date sort walks the latest ends in order (walk.go).
	// It is partial on a condition only the walk states (rid > 0, true of every
	// row), so that no other query picks it: SQLite would take it for the
	// "hi > ?" of a date range's lookup and run an OR as a union.
	`CREATE INDEX IF NOT EXISTS idx_date_hi ON idx_date (type, param, hi, rid) WHERE rid > 0`,
	`CREATE TABLE IF NOT EXISTS idx_number (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, num REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
		PRIMARY KEY (type, param, num, rid, lo, hi, system, code)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS idx_number_rid ON idx_number (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_reference (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, ref_type TEXT NOT NULL, ref_id TEXT NOT NULL, url TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
		PRIMARY KEY (type, param, ref_id, ref_type, rid, url, system, code)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (type, param, url) WHERE url != ''`,
	`CREATE INDEX IF NOT EXISTS idx_reference_ident ON idx_reference (type, param, code) WHERE code != ''`,
	`CREATE INDEX IF NOT EXISTS idx_reference_rid ON idx_reference (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_uri (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, uri TEXT NOT NULL,
		PRIMARY KEY (type, param, uri, rid)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS idx_uri_rid ON idx_uri (rid)`,
	pendingAuditSchema, // pendingaudit.go
}

// analyzeEvery is how many stored versions pass between refreshes of the planner's
// statistics.
const analyzeEvery = 20000

// analyze refreshes the statistics SQLite's planner uses to pick which index
// lookup drives a search (a reference to one patient, not every active goal). The
// analysis limit keeps it to a few milliseconds on any size of database.
func analyze(conn *sql.Conn) {
	ctx := context.Background()
	_, _ = conn.ExecContext(ctx, `PRAGMA analysis_limit = 1000`)
	_, _ = conn.ExecContext(ctx, `ANALYZE`)
}

// lingerTime is how long the writer waits for more concurrent writes before a
// commit, at most.
const lingerTime = 300 * time.Microsecond

// indexTables are the search value tables, one per parameter type (number and
// quantity share one).
var indexTables = []string{"idx_token", "idx_string", "idx_date", "idx_number", "idx_reference", "idx_uri"}

// Open opens (creating if needed) the store in the SQLite file at path.
func Open(path string, opt Options) (*Store, error) {
	keys := defaultKeys
	if opt.NoKeys {
		keys = nil
	}
	return openKeys(path, opt, keys)
}

// openKeys is Open with the denormalised keys ks (tests try other sets).
func openKeys(path string, opt Options, keys keySet) (*Store, error) {
	// Commits sync with fdatasync(2), as SQLite's own Linux builds do: the data
	// and the size needed to read it back are as durable as with fsync(2), without
	// the timestamp update fsync forces through the file system's journal. Where
	// the platform has no fdatasync the driver keeps fsync (the error says so).
	_, _ = sqlitedriver.Fdatasync(true)
	sync := "FULL"
	if opt.NoSync {
		sync = "NORMAL"
	}
	pageSize, err := preparePageSize(path, opt.PageSize)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	dsn := "file:" + url.PathEscape(path) + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=busy_timeout(10000)&_pragma=foreign_keys(off)&_pragma=temp_store(memory)&_txlock=immediate" + walPragma(pageSize)
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	if err := migrate(write); err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := buildKeys(write, keys); err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	mmap := opt.MmapBytes
	if mmap == 0 {
		mmap = DefaultMmapBytes
	}
	mmap = max(mmap, 0)
	read, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)&_pragma=mmap_size("+strconv.FormatInt(mmap, 10)+")")
	if err != nil {
		write.Close()
		return nil, err
	}
	n := opt.ReadConns
	if n <= 0 {
		n = max(4, 2*runtime.GOMAXPROCS(0))
	}
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	s := &Store{read: read, write: write, reqs: make(chan *writeReq, 256), done: make(chan struct{}), closed: make(chan struct{}), max: opt.MaxBatch, onCommit: opt.OnCommit, walkFrom: sampleLimit, keys: keys, stats: newSampleCache(keys)}
	if s.max <= 0 {
		s.max = 64
	}
	if err := s.stmts.prepare(read); err != nil {
		read.Close()
		write.Close()
		return nil, err
	}
	s.rq = newStmtCache(read, stmtCacheSize, false)
	go s.writer()
	return s, nil
}

func migrate(db *sql.DB) error {
	for _, q := range schema {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	var v int
	err := db.QueryRow(`SELECT version FROM schema_version`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = db.Exec(`INSERT INTO schema_version (version) VALUES (?)`, schemaVersion)
		return err
	case err != nil:
		return err
	case v != schemaVersion:
		return fmt.Errorf("the database has schema version %d; this crs knows %d", v, schemaVersion)
	}
	return nil
}

// Close stops the writer after the queued writes and closes the database.
func (s *Store) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	<-s.closed
	s.stmts.close()
	s.rq.close()
	return errors.Join(s.read.Close(), s.write.Close())
}

// Ready checks that the database answers.
func (s *Store) Ready(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fhir.Errorf(fhir.Unavailable, "", "the database does not answer")
	}
	return nil
}

// Write runs fn in one transaction through the writer goroutine.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case <-s.done:
		return fhir.Errorf(fhir.Unavailable, "", "the store is closed")
	case <-ctx.Done():
		return ctx.Err()
	case s.reqs <- req:
	}
	return <-req.done
}

// writer is the one goroutine that writes: it takes the queued requests, runs
// them in one transaction with a savepoint each, and commits once.
func (s *Store) writer() {
	defer close(s.closed)
	conn, err := s.write.Conn(context.Background())
	if err == nil {
		err = s.wstmts.prepare(context.Background(), conn)
	}
	if err != nil {
		s.failAll(fhir.InternalError("write", err))
		return
	}
	defer conn.Close()
	s.wq = newStmtCache(conn, stmtCacheSize, true)
	defer s.wq.close()
	batch := make([]*writeReq, 0, s.max)
	last, sinceAnalyze := 0, 0
	analyze(conn)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.done:
			s.drain(conn)
			return
		}
		// When the last batch had company, writers are concurrent: wait a moment
		// for the ones about to arrive, so that one commit serves more of them. A
		// lone writer never waits.
		var linger <-chan time.Time
		if last > 1 {
			linger = time.After(lingerTime)
		}
	fill:
		for len(batch) < s.max {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				if linger == nil || len(batch) >= last {
					break fill
				}
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
				case <-linger:
					break fill
				}
			}
		}
		last = len(batch)
		if sinceAnalyze += s.commit(conn, batch); sinceAnalyze >= analyzeEvery {
			sinceAnalyze = 0
			analyze(conn)
		}
	}
}

// drain answers the requests still queued at Close.
func (s *Store) drain(conn *sql.Conn) {
	for {
		select {
		case r := <-s.reqs:
			_ = s.commit(conn, []*writeReq{r})
		default:
			return
		}
	}
}

func (s *Store) failAll(err error) {
	for {
		select {
		case r := <-s.reqs:
			r.done <- err
		case <-s.done:
			return
		}
	}
}

// commit runs a batch of write requests in one transaction and commits once.
// There are no savepoints (SQLite copies every page a savepoint touches, which
// costs more than the writes): when a request fails, the whole transaction is
// rolled back and the batch runs again without it. Requests before the failed
// one see exactly the state they saw the first time, so they do the same again.
// It returns how many versions were committed.
func (s *Store) commit(conn *sql.Conn, batch []*writeReq) (puts int) {
	ctx := context.Background()
	results := make([]error, len(batch))
	var pending []int
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		pending = append(pending, i)
	}
	for len(pending) > 0 {
		if _, err := s.wq.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			for _, i := range pending {
				results[i] = fhir.InternalError("begin", err)
			}
			break
		}
		t := &txn{conn: conn, q: s.wq, stmts: &s.wstmts, keys: s.keys, cache: s.keyCache(conn)}
		t0 := time.Now()
		failed := -1
		for k, i := range pending {
			if err := runFn(batch[i], t); err != nil {
				results[i], failed = err, k
				break
			}
			// The batch's buffered search values go in after its last request:
			// a failure there is charged to that request, and the others run
			// again without it.
			if k == len(pending)-1 {
				if err := t.flush(ctx); err != nil {
					results[i], failed = err, k
				}
			}
		}
		if failed >= 0 {
			if _, err := s.wq.ExecContext(ctx, `ROLLBACK`); err != nil {
				s.rollbackFailed(pending, results, err)
				break
			}
			pending = append(pending[:failed:failed], pending[failed+1:]...)
			continue
		}
		s.commits.Add(1)
		s.writes.Add(int64(len(pending)))
		t1 := time.Now()
		_, err := s.wq.ExecContext(ctx, `COMMIT`)
		s.execNanos.Add(int64(t1.Sub(t0)))
		s.commitNanos.Add(int64(time.Since(t1)))
		if s.onCommit != nil {
			s.onCommit(len(pending), time.Since(t1), err)
		}
		if err != nil {
			for _, i := range pending {
				results[i] = fhir.InternalError("commit", err)
			}
			// A failed COMMIT may leave the transaction open: end it so the next
			// batch starts clean.
			_, _ = s.wq.ExecContext(ctx, `ROLLBACK`)
		} else {
			puts = t.puts
			s.keysCommitted(t)
			s.stats.wrote(t.wrote)
		}
		break
	}
	s.settleKeyCache(conn)
	// The transaction has ended and no rows are open: statements evicted
	// during it can close.
	s.wq.release()
	for i, r := range batch {
		r.done <- results[i]
	}
	return puts
}

// rollbackFailed answers the requests of a batch whose ROLLBACK failed: none of
// them can be known to have run alone, so all fail.
func (s *Store) rollbackFailed(pending []int, results []error, err error) {
	for _, i := range pending {
		if results[i] == nil {
			results[i] = fhir.InternalError("rollback", err)
		}
	}
}

// runFn calls the request's function, turning a panic into an error so that
// the writer goroutine survives it.
func runFn(r *writeReq, t *txn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fhir.InternalError("write", fmt.Errorf("panic in write function: %v", p))
		}
	}()
	return r.fn(t)
}

// querier is what reads need: a *sql.DB, or the writer's *sql.Conn inside its
// transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readStmts are the prepared statements of the hot read paths.
type readStmts struct {
	read *sql.Stmt
}

const readSQL = `SELECT v.vid, v.ts, v.deleted, v.method, v.body FROM current c JOIN versions v ON v.seq = c.seq WHERE c.type = ? AND c.id = ?`

func (r *readStmts) prepare(db *sql.DB) error {
	var err error
	r.read, err = db.Prepare(readSQL)
	return err
}

func (r *readStmts) close() {
	if r.read != nil {
		r.read.Close()
	}
}

// Read returns the current version of a resource.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Version, error) {
	return scanVersion(typ, id, s.stmts.read.QueryRowContext(ctx, typ, id))
}

func scanVersion(typ, id string, row *sql.Row) (store.Version, error) {
	v := store.Version{Type: typ, ID: id}
	var ts int64
	var deleted int
	if err := row.Scan(&v.VersionID, &ts, &deleted, &v.Method, &v.Body); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return v, fhir.Errorf(fhir.NotFound, "", "%s/%s is not known", typ, id)
		}
		return v, fhir.InternalError("read", err)
	}
	v.LastUpdated = time.Unix(0, ts).UTC()
	v.Deleted = deleted != 0
	if v.Deleted {
		v.Body = nil
	}
	return v, nil
}

// VRead returns one version of a resource.
func (s *Store) VRead(ctx context.Context, typ, id string, vid int) (store.Version, error) {
	v, err := scanVersion(typ, id, s.rq.QueryRowContext(ctx,
		`SELECT vid, ts, deleted, method, body FROM versions WHERE type = ? AND id = ? AND vid = ?`, typ, id, vid))
	if fhir.KindOf(err) == fhir.NotFound {
		return v, fhir.Errorf(fhir.NotFound, "", "%s/%s has no version %d", typ, id, vid)
	}
	return v, err
}

// Search runs a query on the read pool.
func (s *Store) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	return searchStats(ctx, s.rq, s.keys.rewrite(q), s.walkFrom, s.stats)
}

// txn is the store.Tx of one batch's transaction on the writer's connection.
// The writer runs BEGIN and COMMIT itself rather than through database/sql's
// Tx, whose StmtContext prepares a connection's statement again for every use.
//
// Search values are buffered and inserted in one multi-row INSERT per table for
// the whole batch (statements, not rows, are what cost most: the embedded
// driver parses and plans each statement on every run), before anything reads
// or replaces search values in the transaction, and before COMMIT.
type txn struct {
	conn    *sql.Conn
	q       *stmtCache // the writer's prepared statement cache
	stmts   *writeStmts
	puts    int                      // versions written, for the statistics refresh
	pending map[string][][]any       // search value rows not yet inserted, by table
	last    map[string]store.Version // the version of each type this transaction wrote last
	keys    keySet                   // the denormalised keys kept (keys.go)
	dirt    keyDirt                  // what this transaction's writes made stale in them
	written map[string][]tokenRow    // the key targets' values this transaction wrote
	cache   map[string][]tokenRow    // the committed key targets' values (the store's)
	wrote   map[string]int           // writes by type, for the sample cache (samplecache.go)
}

// writeStmts are the statements of Put, prepared on the writer's connection. It
// is used by the writer goroutine only.
type writeStmts struct {
	conn                                                 *sql.Conn
	current, insertVersion, insertCurrent, updateCurrent *sql.Stmt
	read, last, deleteVersion                            *sql.Stmt
	deleteIndex                                          []*sql.Stmt
	keys                                                 keyStmts
	inserts                                              map[string]*sql.Stmt // "table/rows" → INSERT of that many rows
}

func (w *writeStmts) prepare(ctx context.Context, conn *sql.Conn) error {
	w.conn = conn
	w.inserts = map[string]*sql.Stmt{}
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = conn.PrepareContext(ctx, q)
		return st
	}
	w.current = prep(`SELECT rid, vid FROM current WHERE type = ? AND id = ?`)
	w.insertVersion = prep(`INSERT INTO versions (type, id, vid, ts, deleted, method, body) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	w.insertCurrent = prep(`INSERT INTO current (type, id, vid, seq, deleted) VALUES (?, ?, ?, ?, ?)`)
	w.updateCurrent = prep(`UPDATE current SET vid = ?, seq = ?, deleted = ? WHERE rid = ?`)
	w.read = prep(readSQL)
	w.last = prep(lastSQL)
	w.deleteVersion = prep(`DELETE FROM versions WHERE seq = ?`)
	for _, table := range indexTables {
		w.deleteIndex = append(w.deleteIndex, prep(`DELETE FROM `+table+` WHERE rid = ?`))
	}
	w.keys.prepare(prep)
	return err
}

// insertRows returns the prepared INSERT of n rows into table.
func (w *writeStmts) insertRows(ctx context.Context, table string, n int) (*sql.Stmt, error) {
	key := table + "/" + strconv.Itoa(n)
	if st, ok := w.inserts[key]; ok {
		return st, nil
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", indexColumns[table]), ", ") + ")"
	q := "INSERT OR IGNORE INTO " + table + " VALUES " + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
	st, err := w.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	w.inserts[key] = st
	return st, nil
}

// Read returns the current version as this transaction sees it.
func (t *txn) Read(ctx context.Context, typ, id string) (store.Version, error) {
	return scanVersion(typ, id, t.stmts.read.QueryRowContext(ctx, typ, id))
}

// Search searches as this transaction sees the store.
func (t *txn) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	rq := t.keys.rewrite(q)
	if err := t.flushFor(ctx, q, rq); err != nil {
		return nil, err
	}
	return search(ctx, t.q, rq, sampleLimit)
}

// lastSQL finds the version of a type written last (versions_type_seq serves it).
const lastSQL = `SELECT id, vid, ts, deleted, method, body FROM versions WHERE type = ? ORDER BY seq DESC LIMIT 1`

// Last returns the version of typ written last.
func (t *txn) Last(ctx context.Context, typ string) (store.Version, error) {
	if v, ok := t.last[typ]; ok {
		return v, nil
	}
	var ts int64
	var deleted int
	var body []byte
	v := store.Version{Type: typ}
	err := t.stmts.last.QueryRowContext(ctx, typ).Scan(&v.ID, &v.VersionID, &ts, &deleted, &v.Method, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Version{}, fhir.Errorf(fhir.NotFound, "", "no %s has been written", typ)
	}
	if err != nil {
		return store.Version{}, fhir.InternalError("last", err)
	}
	v.LastUpdated, v.Deleted, v.Body = time.Unix(0, ts).UTC(), deleted == 1, body
	return v, nil
}

// Put stores the next version of a resource and replaces its search values.
// A first version is inserted straight away (the unique key on current catches a
// resource that exists already); later versions check the current one first.
func (t *txn) Put(ctx context.Context, v store.Version, index []fhir.IndexValue) error {
	var rid int64
	cur := 0
	if v.VersionID != 1 {
		err := t.stmts.current.QueryRowContext(ctx, v.Type, v.ID).Scan(&rid, &cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fhir.InternalError("put", err)
		}
		if v.VersionID != cur+1 {
			return conflict(v, cur)
		}
	}
	deleted := 0
	var body any = v.Body
	if v.Deleted {
		deleted, body, v.Body = 1, nil, nil
	}
	res, err := t.stmts.insertVersion.ExecContext(ctx, v.Type, v.ID, v.VersionID, v.LastUpdated.UnixNano(), deleted, v.Method, body)
	if err != nil {
		if v.VersionID == 1 && isUnique(err) {
			return conflict(v, -1)
		}
		return fhir.InternalError("put", err)
	}
	seq, _ := res.LastInsertId()
	if cur == 0 {
		res, err = t.stmts.insertCurrent.ExecContext(ctx, v.Type, v.ID, v.VersionID, seq, deleted)
		if err != nil {
			if isUnique(err) {
				// Put promises that nothing is stored on a conflict.
				if _, derr := t.stmts.deleteVersion.ExecContext(ctx, seq); derr != nil {
					return fhir.InternalError("put", derr)
				}
				return conflict(v, -1)
			}
			return fhir.InternalError("put", err)
		}
		rid, _ = res.LastInsertId()
	} else {
		if _, err := t.stmts.updateCurrent.ExecContext(ctx, v.VersionID, seq, deleted, rid); err != nil {
			return fhir.InternalError("put", err)
		}
		if err := t.beforeReplace(ctx, v.Type, rid); err != nil {
			return err
		}
		if err := t.keysBefore(ctx, v, rid); err != nil {
			return err
		}
		for _, st := range t.stmts.deleteIndex {
			if _, err := st.ExecContext(ctx, rid); err != nil {
				return fhir.InternalError("put", err)
			}
		}
	}
	t.puts++
	t.touch(v.Type, 1)
	if t.last == nil {
		t.last = map[string]store.Version{}
	}
	t.last[v.Type] = v
	if err := t.keysAfter(ctx, v, rid, index); err != nil {
		return err
	}
	if v.Deleted {
		return nil
	}
	return t.bufferIndex(rid, v.Type, index)
}

func conflict(v store.Version, cur int) error {
	if cur < 0 {
		return fhir.Errorf(fhir.Conflict, "", "%s/%s exists already: version 1 cannot be stored again", v.Type, v.ID)
	}
	return fhir.Errorf(fhir.Conflict, "", "version %d of %s/%s cannot follow version %d", v.VersionID, v.Type, v.ID, cur)
}

func isUnique(err error) bool {
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// indexColumns is the number of columns of each index table.
var indexColumns = map[string]int{"idx_token": 6, "idx_string": 5, "idx_date": 5, "idx_number": 8, "idx_reference": 8, "idx_uri": 4}

// maxRowsPerInsert bounds the rows of one multi-row INSERT.
const maxRowsPerInsert = 32

// bufferIndex adds the search values of resource rid to the rows flush inserts.
func (t *txn) bufferIndex(rid int64, typ string, index []fhir.IndexValue) error {
	if t.pending == nil {
		t.pending = map[string][][]any{}
	}
	rows := t.pending
	for _, iv := range index {
		table, r, err := indexRow(rid, typ, iv)
		if err != nil {
			return err
		}
		rows[table] = append(rows[table], r)
	}
	return nil
}

// flush inserts the buffered search values with one multi-row INSERT per table
// (of at most maxRowsPerInsert rows).
func (t *txn) flush(ctx context.Context) error {
	for _, table := range indexTables {
		all := t.pending[table]
		delete(t.pending, table)
		if err := t.insertRows(ctx, table, all); err != nil {
			return err
		}
	}
	return t.refreshKeys(ctx)
}

// Backup writes a consistent copy of the SQLite store at path to dst (which must
// not exist) with VACUUM INTO. It runs on its own read connection, so it can
// run while a server is writing to the store: the copy is the database as of
// one transaction, compacted, without the WAL. Restoring is copying dst back
// in place of path while no server runs.
func Backup(ctx context.Context, path, dst string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("backup: %s exists; name a new file", dst)
	}
	db, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", path, err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("backup: %s is not a crs store: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}
