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
// grows to about 16 MiB before it is reused.
const walCheckpointPages = 4000

// walPragma is the DSN parameter that sets walCheckpointPages on every
// connection (only the writer's commits checkpoint).
var walPragma = "&_pragma=wal_autocheckpoint(" + strconv.Itoa(walCheckpointPages) + ")"
