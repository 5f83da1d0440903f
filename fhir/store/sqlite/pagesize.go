package sqlite

import (
	"database/sql"
	"fmt"
	"net/url"
)

// DefaultPageSize is the page size, in bytes, of a database the store
// creates when Options.PageSize is 0: SQLite's own default. Every commit
// writes each page it dirties whole into the WAL (and the checkpoint writes
// it again), so the page size sets the bytes a small write pays; see the
// README, "SQLite page size", for the sizes measured against it.
const DefaultPageSize = 4096

// validPageSize reports whether n is a page size SQLite accepts: a power of
// two from 512 to 65536.
func validPageSize(n int) bool {
	return n >= 512 && n <= 65536 && n&(n-1) == 0
}

// preparePageSize gives a database that does not exist yet (or is empty) the
// page size want, and returns the page size the database at path has. SQLite
// fixes the page size when the first page is written, and a database in WAL
// mode can never change it, so this runs on a connection of its own before
// any other: "page_size" first, then the switch to WAL, which writes page 1.
// On an existing database both statements change nothing (its page size is
// kept, in WAL or rollback mode: a new page size would take a VACUUM, which
// this never runs).
func preparePageSize(path string, want int) (int, error) {
	if want == 0 {
		want = DefaultPageSize
	}
	if !validPageSize(want) {
		return 0, fmt.Errorf("page size %d: want a power of two from 512 to 65536", want)
	}
	db, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(fmt.Sprintf(`PRAGMA page_size = %d`, want)); err != nil {
		return 0, fmt.Errorf("page size: %w", err)
	}
	if _, err := db.Exec(`PRAGMA journal_mode = WAL`); err != nil {
		return 0, fmt.Errorf("journal mode: %w", err)
	}
	var got int
	if err := db.QueryRow(`PRAGMA page_size`).Scan(&got); err != nil {
		return 0, fmt.Errorf("page size: %w", err)
	}
	return got, nil
}
