package sqlite

import (
	"database/sql"
	"errors"
)

// The store's cache of key targets' values (keys.go) holds committed values,
// so it must be emptied when another connection (another process) commits.
// It used to ask with PRAGMA data_version at the start of every batch: a
// statement through database/sql, about 1% of a create's CPU in
// BenchmarkKeysWriteCost. SQLite's pager keeps the same knowledge as a
// counter that the file control SQLITE_FCNTL_DATA_VERSION reads without a
// statement. Unlike the pragma, the counter also moves with the connection's
// own commits, so the writer reads it twice per batch: after its transaction
// ends (settleKeyCache, which takes in its own commit) and after the next
// BEGIN IMMEDIATE (keyCache). A commit by another connection in between is
// seen by the BEGIN, which starts a read transaction on the new WAL and
// resets the pager, moving the counter; nothing else runs on the writer's
// connection between the two reads but the writer's ANALYZE (every 20,000
// versions, analyzeEvery), which moves the counter too and so empties the
// cache once; so would anything else that resets the pager (a checkpoint
// restarting the WAL): a false alarm costs a refill, never a stale value.

// fileDataVersion reads the pager's data version of conn's main database.
func fileDataVersion(conn *sql.Conn) (uint32, error) {
	var v uint32
	err := conn.Raw(func(dc any) error {
		fc, ok := dc.(interface {
			FileControlDataVersion(dbName string) (uint32, error)
		})
		if !ok {
			return errors.New("sqlite driver without SQLITE_FCNTL_DATA_VERSION")
		}
		var err error
		v, err = fc.FileControlDataVersion("main")
		return err
	})
	return v, err
}

// keyCache returns the store's cache of key targets' values for a batch's
// transaction, emptied first when another connection has committed to the
// database since the writer's last transaction ended. It runs after BEGIN
// IMMEDIATE.
func (s *Store) keyCache(conn *sql.Conn) map[string][]tokenRow {
	if len(s.keys) == 0 {
		return nil
	}
	v, err := fileDataVersion(conn)
	if err != nil || !s.dataOK || int64(v) != s.dataVer || s.cache == nil {
		s.cache = map[string][]tokenRow{}
	}
	return s.cache
}

// settleKeyCache records the data version once the writer's transaction has
// ended (committed or rolled back), so that the next keyCache sees only
// other connections' commits.
func (s *Store) settleKeyCache(conn *sql.Conn) {
	if len(s.keys) == 0 {
		return
	}
	v, err := fileDataVersion(conn)
	s.dataVer, s.dataOK = int64(v), err == nil
}
