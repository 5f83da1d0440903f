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
	"runtime"
	"time"

	_ "modernc.org/sqlite" // the driver

	"crs/fhir"
	"crs/fhir/store"
)

// Options tune the store. The zero value is the durable default.
type Options struct {
	ReadConns int  // read connections; default 2×GOMAXPROCS (at least 4)
	MaxBatch  int  // most Write calls in one commit; default 64
	NoSync    bool // synchronous=NORMAL: survives kill -9, not power loss (benchmarks only)
}

// Store is the SQLite backend.
type Store struct {
	read   *sql.DB
	write  *sql.DB
	reqs   chan *writeReq
	done   chan struct{}
	closed chan struct{}
	max    int
	stmts  readStmts
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
	`CREATE TABLE IF NOT EXISTS idx_token (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS idx_token_code ON idx_token (type, param, code, system, rid)`,
	`CREATE INDEX IF NOT EXISTS idx_token_rid ON idx_token (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_string (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, str TEXT NOT NULL, exact TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS idx_string_str ON idx_string (type, param, str, rid)`,
	`CREATE INDEX IF NOT EXISTS idx_string_rid ON idx_string (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_date (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS idx_date_lo ON idx_date (type, param, lo, hi, rid)`,
	`CREATE INDEX IF NOT EXISTS idx_date_rid ON idx_date (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_number (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, num REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS idx_number_num ON idx_number (type, param, num, rid)`,
	`CREATE INDEX IF NOT EXISTS idx_number_rid ON idx_number (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_reference (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, ref_type TEXT NOT NULL, ref_id TEXT NOT NULL, url TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS idx_reference_id ON idx_reference (type, param, ref_id, ref_type, rid)`,
	`CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (type, param, url, rid)`,
	`CREATE INDEX IF NOT EXISTS idx_reference_rid ON idx_reference (rid)`,
	`CREATE TABLE IF NOT EXISTS idx_uri (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, uri TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS idx_uri_uri ON idx_uri (type, param, uri, rid)`,
	`CREATE INDEX IF NOT EXISTS idx_uri_rid ON idx_uri (rid)`,
}

// indexTables are the search value tables, one per parameter type (number and
// quantity share one).
var indexTables = []string{"idx_token", "idx_string", "idx_date", "idx_number", "idx_reference", "idx_uri"}

// Open opens (creating if needed) the store in the SQLite file at path.
func Open(path string, opt Options) (*Store, error) {
	sync := "FULL"
	if opt.NoSync {
		sync = "NORMAL"
	}
	dsn := "file:" + url.PathEscape(path) + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=busy_timeout(10000)&_pragma=foreign_keys(off)&_txlock=immediate"
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	if err := migrate(write); err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
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
	s := &Store{read: read, write: write, reqs: make(chan *writeReq, 256), done: make(chan struct{}), closed: make(chan struct{}), max: opt.MaxBatch}
	if s.max <= 0 {
		s.max = 64
	}
	if err := s.stmts.prepare(read); err != nil {
		read.Close()
		write.Close()
		return nil, err
	}
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
	if err != nil {
		s.failAll(fhir.InternalError("write", err))
		return
	}
	defer conn.Close()
	batch := make([]*writeReq, 0, s.max)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.done:
			s.drain(conn)
			return
		}
	fill:
		for len(batch) < s.max {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(conn, batch)
	}
}

// drain answers the requests still queued at Close.
func (s *Store) drain(conn *sql.Conn) {
	for {
		select {
		case r := <-s.reqs:
			s.commit(conn, []*writeReq{r})
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

func (s *Store) commit(conn *sql.Conn, batch []*writeReq) {
	ctx := context.Background()
	results := make([]error, len(batch))
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range batch {
			r.done <- fhir.InternalError("begin", err)
		}
		return
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
			results[i] = fhir.InternalError("savepoint", err)
			continue
		}
		err := runFn(r, &txn{ctx: ctx, tx: tx})
		if err != nil {
			if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO w`); rerr != nil {
				err = fhir.InternalError("rollback", rerr)
			}
		}
		if _, rerr := tx.ExecContext(ctx, `RELEASE w`); rerr != nil && err == nil {
			err = fhir.InternalError("release", rerr)
		}
		results[i] = err
	}
	if err := tx.Commit(); err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = fhir.InternalError("commit", err)
			}
		}
	}
	for i, r := range batch {
		r.done <- results[i]
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

// querier is what reads need: a *sql.DB, or the writer's *sql.Tx.
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
	v, err := scanVersion(typ, id, s.read.QueryRowContext(ctx,
		`SELECT vid, ts, deleted, method, body FROM versions WHERE type = ? AND id = ? AND vid = ?`, typ, id, vid))
	if fhir.KindOf(err) == fhir.NotFound {
		return v, fhir.Errorf(fhir.NotFound, "", "%s/%s has no version %d", typ, id, vid)
	}
	return v, err
}

// Search runs a query on the read pool.
func (s *Store) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	return search(ctx, s.read, q)
}

// txn is the store.Tx of one Write call inside the writer's transaction.
type txn struct {
	ctx context.Context
	tx  *sql.Tx
}

func (t *txn) Read(ctx context.Context, typ, id string) (store.Version, error) {
	return scanVersion(typ, id, t.tx.QueryRowContext(ctx, readSQL, typ, id))
}

func (t *txn) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	return search(ctx, t.tx, q)
}

// Put stores the next version of a resource and replaces its search values.
func (t *txn) Put(ctx context.Context, v store.Version, index []fhir.IndexValue) error {
	var rid int64
	cur := 0
	err := t.tx.QueryRowContext(ctx, `SELECT rid, vid FROM current WHERE type = ? AND id = ?`, v.Type, v.ID).Scan(&rid, &cur)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fhir.InternalError("put", err)
	}
	if v.VersionID != cur+1 {
		return fhir.Errorf(fhir.Conflict, "", "version %d of %s/%s cannot follow version %d", v.VersionID, v.Type, v.ID, cur)
	}
	deleted := 0
	if v.Deleted {
		deleted = 1
	}
	var body any
	if !v.Deleted {
		body = v.Body
	}
	res, err := t.tx.ExecContext(ctx, `INSERT INTO versions (type, id, vid, ts, deleted, method, body) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		v.Type, v.ID, v.VersionID, v.LastUpdated.UnixNano(), deleted, v.Method, body)
	if err != nil {
		return fhir.InternalError("put", err)
	}
	seq, _ := res.LastInsertId()
	if cur == 0 {
		res, err = t.tx.ExecContext(ctx, `INSERT INTO current (type, id, vid, seq, deleted) VALUES (?, ?, ?, ?, ?)`, v.Type, v.ID, v.VersionID, seq, deleted)
		if err != nil {
			return fhir.InternalError("put", err)
		}
		rid, _ = res.LastInsertId()
	} else {
		if _, err := t.tx.ExecContext(ctx, `UPDATE current SET vid = ?, seq = ?, deleted = ? WHERE rid = ?`, v.VersionID, seq, deleted, rid); err != nil {
			return fhir.InternalError("put", err)
		}
		for _, table := range indexTables {
			if _, err := t.tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE rid = ?`, rid); err != nil {
				return fhir.InternalError("put", err)
			}
		}
	}
	if v.Deleted {
		return nil
	}
	return insertIndex(ctx, t.tx, rid, v.Type, index)
}

func insertIndex(ctx context.Context, tx *sql.Tx, rid int64, typ string, index []fhir.IndexValue) error {
	for _, iv := range index {
		var err error
		switch iv.Type {
		case fhir.TypeToken:
			_, err = tx.ExecContext(ctx, `INSERT INTO idx_token VALUES (?, ?, ?, ?, ?, ?)`, rid, typ, iv.Param, iv.System, iv.Code, iv.Text)
		case fhir.TypeString:
			_, err = tx.ExecContext(ctx, `INSERT INTO idx_string VALUES (?, ?, ?, ?, ?)`, rid, typ, iv.Param, iv.Str, iv.Exact)
		case fhir.TypeDate:
			_, err = tx.ExecContext(ctx, `INSERT INTO idx_date VALUES (?, ?, ?, ?, ?)`, rid, typ, iv.Param, lowMillis(iv.Low), highMillis(iv.High))
		case fhir.TypeNumber, fhir.TypeQuantity:
			_, err = tx.ExecContext(ctx, `INSERT INTO idx_number VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, rid, typ, iv.Param, iv.Num, finite(iv.NumLow), finite(iv.NumHi), iv.System, iv.Code)
		case fhir.TypeReference:
			_, err = tx.ExecContext(ctx, `INSERT INTO idx_reference VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, rid, typ, iv.Param, iv.RefType, iv.RefID, iv.Exact, iv.System, iv.Code)
		case fhir.TypeURI:
			_, err = tx.ExecContext(ctx, `INSERT INTO idx_uri VALUES (?, ?, ?, ?)`, rid, typ, iv.Param, iv.Exact)
		default:
			return fhir.InternalError("index", fmt.Errorf("index value of unknown type %q", iv.Type))
		}
		if err != nil {
			return fhir.InternalError("index", err)
		}
	}
	return nil
}
