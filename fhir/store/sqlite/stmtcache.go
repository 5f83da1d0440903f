package sqlite

import (
	"container/list"
	"context"
	"database/sql"
	"sync"
)

// stmtCacheSize is how many prepared statements each cache keeps. A search's
// SQL text varies with its shape (parameters, modifiers, sort, IN list
// lengths), not its values, so a server's working set is a few dozen shapes.
const stmtCacheSize = 256

// preparer is where a cache prepares and, when preparing fails, runs its
// statements: the read pool (*sql.DB) or the writer's connection (*sql.Conn).
type preparer interface {
	querier
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// stmtCache is a bounded, least recently used cache of prepared statements keyed
// by their SQL text. It is a querier: the store runs every search through one,
// so that SQLite parses and plans each shape of query once rather than on every
// run (the driver keeps a prepared statement's SQLite handle).
//
// A statement is closed only when no caller holds it: an evicted statement in use
// is closed by its last user. On the read pool, database/sql then defers the
// close until the statement's open rows are closed. On the writer's connection
// it does not (a connection's statement closes at once), so the writer's cache
// is made with retire set: evicted statements are kept until release, which the
// writer calls when its transaction has ended and no rows are open.
type stmtCache struct {
	db      preparer
	max     int
	retire  bool
	mu      sync.Mutex
	entries map[string]*list.Element // of *cachedStmt
	lru     list.List                // most recently used first
	retired []*sql.Stmt
	closed  bool
}

type cachedStmt struct {
	query   string
	st      *sql.Stmt
	users   int
	evicted bool
}

func newStmtCache(db preparer, max int, retire bool) *stmtCache {
	return &stmtCache{db: db, max: max, retire: retire, entries: map[string]*list.Element{}}
}

// acquire returns the prepared statement of query, preparing it on a miss, and
// marks it in use until done is called. It returns nil when the statement could
// not be prepared: the caller runs the query unprepared, which reports the error
// the same way.
func (c *stmtCache) acquire(ctx context.Context, query string) *cachedStmt {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	if e, ok := c.entries[query]; ok {
		cs := e.Value.(*cachedStmt)
		cs.users++
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		return cs
	}
	c.mu.Unlock()
	// Prepare outside the lock: on the read pool it waits for a connection.
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		st.Close()
		return nil
	}
	if e, ok := c.entries[query]; ok {
		// Another reader prepared it meanwhile: use theirs.
		cs := e.Value.(*cachedStmt)
		cs.users++
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		st.Close()
		return cs
	}
	cs := &cachedStmt{query: query, st: st, users: 1}
	c.entries[query] = c.lru.PushFront(cs)
	var closing []*sql.Stmt
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.entries, old.query)
		old.evicted = true
		if old.users == 0 {
			closing = append(closing, c.retireLocked(old.st)...)
		}
	}
	c.mu.Unlock()
	closeAll(closing)
	return cs
}

// done ends one use of cs; the last user of an evicted statement closes it.
func (c *stmtCache) done(cs *cachedStmt) {
	c.mu.Lock()
	cs.users--
	var closing []*sql.Stmt
	if cs.evicted && cs.users == 0 {
		closing = c.retireLocked(cs.st)
	}
	c.mu.Unlock()
	closeAll(closing)
}

// retireLocked returns st to close now, or keeps it for release.
func (c *stmtCache) retireLocked(st *sql.Stmt) []*sql.Stmt {
	if c.retire && !c.closed {
		c.retired = append(c.retired, st)
		return nil
	}
	return []*sql.Stmt{st}
}

// release closes the retired statements (writer cache: no rows are open).
func (c *stmtCache) release() {
	c.mu.Lock()
	closing := c.retired
	c.retired = nil
	c.mu.Unlock()
	closeAll(closing)
}

// close closes every statement; later queries run unprepared.
func (c *stmtCache) close() {
	c.mu.Lock()
	c.closed = true
	closing := c.retired
	c.retired = nil
	for e := c.lru.Front(); e != nil; e = e.Next() {
		closing = append(closing, e.Value.(*cachedStmt).st)
	}
	c.lru.Init()
	c.entries = map[string]*list.Element{}
	c.mu.Unlock()
	closeAll(closing)
}

// len is how many statements the cache holds (tests).
func (c *stmtCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func closeAll(sts []*sql.Stmt) {
	for _, st := range sts {
		_ = st.Close()
	}
}

// QueryContext runs query as a prepared statement.
func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	cs := c.acquire(ctx, query)
	if cs == nil {
		return c.db.QueryContext(ctx, query, args...)
	}
	// The rows keep the statement open (read pool) or the writer keeps it until
	// its transaction ends, so it is done as soon as the rows exist.
	defer c.done(cs)
	return cs.st.QueryContext(ctx, args...)
}

// QueryRowContext runs query as a prepared statement.
func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	cs := c.acquire(ctx, query)
	if cs == nil {
		return c.db.QueryRowContext(ctx, query, args...)
	}
	defer c.done(cs)
	return cs.st.QueryRowContext(ctx, args...)
}

// ExecContext runs query as a prepared statement.
func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	cs := c.acquire(ctx, query)
	if cs == nil {
		return c.db.ExecContext(ctx, query, args...)
	}
	defer c.done(cs)
	return cs.st.ExecContext(ctx, args...)
}
