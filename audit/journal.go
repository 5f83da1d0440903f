package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// Journal is the audit trail's append-only file: an AuditEvent is durable
// once its line is in the journal and fsynced, which costs one small
// sequential write and one fdatasync shared by every event that arrived
// meanwhile (group commit) — far less than a database commit that indexes
// the event. The engine materialises journal entries into AuditEvent
// resources behind it, in large batches, and truncates the journal once
// every entry in it is materialised. After a crash, Open returns the entries
// still in the file; materialising is idempotent (by AuditEvent id), so an
// entry that was already materialised is skipped.
//
// A line is "<crc32 of the JSON, 8 hex digits> <JSON of an Entry>\n"; a torn
// last line (the write that a crash interrupted, never acknowledged) fails its
// checksum and is dropped at Open.
type Journal struct {
	path string
	max  int // entries that may wait for their fsync or their materialisation

	mu       sync.Mutex
	f        *os.File
	pending  []*journalWrite // waiting for the next write and fsync
	flushing bool
	backlog  int // durable entries not yet reported materialised
	closed   bool
	durable  chan struct{} // signalled (non-blocking) when entries become durable
	ready    []Entry       // durable entries not yet taken by the materialiser
	// recovered is how many of the first entries taken came from the file at
	// Open, and may have been materialised before the crash.
	recovered int
	size      int64 // bytes in the file
}

// Entry is one AuditEvent in the journal: its id, when it was recorded, and
// its canonical content (the event without id, meta and chain extension, as
// Canonical gives it), which is what its chain hash covers.
type Entry struct {
	ID        string          `json:"id"`
	Recorded  time.Time       `json:"t"`
	Canonical json.RawMessage `json:"c"`
}

type journalWrite struct {
	line  []byte
	entry Entry
	done  chan error
}

// ErrJournalFull is returned by Append when more entries than the journal's
// bound wait for their fsync or their materialisation.
var ErrJournalFull = errors.New("the audit journal is full: AuditEvents are not being materialised fast enough")

// OpenJournal opens (creating it if need be) the journal at path. The entries
// it still holds from before (their number is returned) are the first Take
// gives: some may be materialised already (Recovered says how many to check).
// max bounds the entries waiting (DefaultJournalMax when <= 0).
func OpenJournal(path string, max int) (*Journal, int, error) {
	if max <= 0 {
		max = DefaultJournalMax
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, err
	}
	entries, good, err := readJournal(f)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	// Drop a torn tail, so that new lines follow the last good one.
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, 0, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	j := &Journal{path: path, max: max, f: f, durable: make(chan struct{}, 1), backlog: len(entries), ready: entries, recovered: len(entries), size: good}
	if len(entries) > 0 {
		j.durable <- struct{}{}
	}
	return j, len(entries), nil
}

// DefaultJournalMax is the default bound of entries waiting in a journal.
const DefaultJournalMax = 65536

// readJournal reads the good lines of a journal and the offset after the last.
func readJournal(r io.Reader) ([]Entry, int64, error) {
	var out []Entry
	var good int64
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return out, good, nil // a line without its newline is torn
		}
		if err != nil {
			return nil, 0, err
		}
		e, ok := parseLine(line)
		if !ok {
			return out, good, nil
		}
		out = append(out, e)
		good += int64(len(line))
	}
}

func parseLine(line []byte) (Entry, bool) {
	if len(line) < 10 || line[8] != ' ' || line[len(line)-1] != '\n' {
		return Entry{}, false
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return Entry{}, false
	}
	body := line[9 : len(line)-1]
	if crc32.ChecksumIEEE(body) != uint32(sum[0])<<24|uint32(sum[1])<<16|uint32(sum[2])<<8|uint32(sum[3]) {
		return Entry{}, false
	}
	var e Entry
	if err := json.Unmarshal(body, &e); err != nil || e.ID == "" {
		return Entry{}, false
	}
	return e, true
}

func formatLine(e Entry) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(body, '\n') >= 0 {
		return nil, fmt.Errorf("journal entry %s has a newline", e.ID)
	}
	sum := crc32.ChecksumIEEE(body)
	line := make([]byte, 0, len(body)+10)
	line = fmt.Appendf(line, "%08x ", sum)
	line = append(line, body...)
	return append(line, '\n'), nil
}

// Append writes e to the journal and returns once it is durable (fsynced),
// sharing the write and fsync with every entry appended meanwhile. A full
// journal is ErrJournalFull at once.
func (j *Journal) Append(e Entry) error {
	line, err := formatLine(e)
	if err != nil {
		return err
	}
	w := &journalWrite{line: line, entry: e, done: make(chan error, 1)}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return errors.New("the audit journal is closed")
	}
	if len(j.pending)+j.backlog >= j.max {
		j.mu.Unlock()
		return ErrJournalFull
	}
	j.pending = append(j.pending, w)
	if !j.flushing {
		j.flushing = true
		go j.flush()
	}
	j.mu.Unlock()
	return <-w.done
}

// flush writes and fsyncs the waiting lines, batch after batch, until none wait.
func (j *Journal) flush() {
	var buf []byte
	for {
		j.mu.Lock()
		batch := j.pending
		j.pending = nil
		if len(batch) == 0 {
			j.flushing = false
			j.mu.Unlock()
			return
		}
		f := j.f
		j.mu.Unlock()
		buf = buf[:0]
		for _, w := range batch {
			buf = append(buf, w.line...)
		}
		_, err := f.Write(buf)
		if err == nil {
			err = syncData(f)
		}
		j.mu.Lock()
		if err == nil {
			j.size += int64(len(buf))
			j.backlog += len(batch)
			for _, w := range batch {
				j.ready = append(j.ready, w.entry)
			}
			select {
			case j.durable <- struct{}{}:
			default:
			}
		}
		j.mu.Unlock()
		for _, w := range batch {
			w.done <- err
		}
	}
}

// Durable is signalled when entries become durable: the materialiser waits on
// it and then calls Take.
func (j *Journal) Durable() <-chan struct{} { return j.durable }

// Take returns up to n durable entries not yet taken, oldest first.
func (j *Journal) Take(n int) []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	if n > len(j.ready) {
		n = len(j.ready)
	}
	out := append([]Entry(nil), j.ready[:n]...)
	j.ready = j.ready[n:]
	if len(j.ready) == 0 {
		j.ready = nil
	}
	return out
}

// Recovered reports how many of the entries still to be taken came from the
// file at Open (and may have been materialised already), and forgets them.
func (j *Journal) Recovered(taken int) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := min(taken, j.recovered)
	j.recovered -= n
	return n
}

// Requeue puts taken entries back, first in line (their materialisation
// failed; it is tried again).
func (j *Journal) Requeue(entries []Entry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ready = append(append([]Entry(nil), entries...), j.ready...)
}

// Materialised reports that n taken entries are stored as AuditEvent
// resources. When every entry in the file is, the file is emptied.
func (j *Journal) Materialised(n int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.backlog -= n
	if j.backlog > 0 || j.flushing || len(j.pending) > 0 || len(j.ready) > 0 || j.closed || j.size < truncateAt {
		return nil
	}
	// Emptying the file costs a metadata commit, which every following fsync
	// would wait for: done once the file is large, not after every batch.
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	j.size = 0
	_, err := j.f.Seek(0, io.SeekStart)
	return err
}

// truncateAt is the journal size past which a fully materialised journal is
// emptied.
const truncateAt = 64 << 20

// Depth is the number of entries waiting for their fsync or their
// materialisation (for metrics).
func (j *Journal) Depth() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending) + j.backlog
}

// Close closes the file; entries not yet materialised stay in it for the next
// Open.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.flushing { // let the fsync under way finish and answer its callers
		j.mu.Unlock()
		time.Sleep(time.Millisecond)
		j.mu.Lock()
	}
	if j.closed {
		return nil
	}
	j.closed = true
	return j.f.Close()
}

// syncData makes the file's data (and its size) durable: fdatasync, which
// skips the timestamps fsync would also write.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
