package sqlite

import "strconv"

// walCheckpointPages is the WAL size, in pages, at which a commit copies the
// WAL back into the database file (SQLite's wal_autocheckpoint; its default
// is 1,000). A checkpoint writes each page the WAL holds once, however many
// commits rewrote it, and the pages small writes touch are mostly the same
// few (the B-trees' right-hand leaves and their parents): four times the
// interval copies those hot pages a quarter as often. An ADT message over
// MLLP spent 0.15 ms of its ~2 ms of CPU in checkpoints at 1,000 pages and
// about 0.08 ms at 4,000 (profiles of 3,000 A01s, same run); the WAL then
// grows to about 16 MiB before it is reused. The interval is for 4 KiB
// pages; a database with pages of another size checkpoints after the same
// number of bytes (walPages).
const walCheckpointPages = 4000

// walPages is the checkpoint interval, in pages, of a database whose pages
// are pageSize bytes: walCheckpointPages 4 KiB pages' worth, so that the WAL
// grows to the same 16 MiB whatever the page size.
func walPages(pageSize int) int {
	return walCheckpointPages * 4096 / pageSize
}

// walPragma is the DSN parameter that sets walPages on every connection of a
// database with pages of pageSize bytes (only the writer's commits
// checkpoint).
func walPragma(pageSize int) string {
	return "&_pragma=wal_autocheckpoint(" + strconv.Itoa(walPages(pageSize)) + ")"
}
