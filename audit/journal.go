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
	"strconv"
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
// The file is preallocated (zero-filled) and written in place, and once every
// entry in it is materialised the next line goes back to its start: so an
// fdatasync flushes only data, never the file's size or extents, whose
// metadata commit would cost milliseconds on a busy disk. A line is
// "<crc32, 8 hex> <sequence, 16 hex> <JSON of an Entry>\n", the checksum
// covering sequence and JSON. Open reads lines from the start while each is
// whole, checks and follows the one before (sequence + 1): a torn line (the
// write a crash interrupted, never acknowledged), the zeros past the end or
// the older lines after a wrap end the journal.
type Journal struct {
	path string
	max  int // entries that may wait for their fsync or their materialisation

	mu      sync.Mutex
	f       *os.File
	pending []*journalWrite // waiting for their write
	written []*journalWrite // written, waiting for an fdatasync that covers them
	syncing int             // flush goroutines running
	failed  error           // a write or fdatasync failed: everything is refused
	backlog int             // durable entries not yet reported materialised
	closed  bool
	durable chan struct{} // signalled (non-blocking) when entries become durable
	ready   []Entry       // durable entries not yet taken by the materialiser
	// recovered is how many of the first entries taken came from the file at
	// Open, and may have been materialised before the crash.
	recovered   int
	off         int64     // where the next line goes
	lastDurable time.Time // when entries last became durable
	seq         uint64    // the sequence of the next line
	// size is how far the file is preallocated (zero-filled and fsynced).
	// Before the lines reach it, extend adds another journalSize behind it in
	// the background (extending): a line written past it would grow the file,
	// and every fdatasync would then commit the file's new size as well.
	size      int64
	extending bool
	extended  *sync.Cond // signalled when an extension ends
	// gather is signalled (non-blocking) by Append when the lines waiting
	// reach want: the flusher, after an fdatasync, waits for the callers it
	// just answered to come back (up to a linger) so that they share the
	// next fdatasync instead of each cohort paying its own (group commit).
	gather chan struct{}
	want   int
	syncs  int64 // successful fdatasyncs of lines
	// room is closed (and replaced) whenever materialised entries or Close
	// may have made room for an Append waiting in a full journal, which
	// waits up to fullWait for it.
	room     chan struct{}
	fullWait time.Duration
}

// Entry is one AuditEvent in the journal: its id, when it was recorded, and
// what it says — the Record it was made from (NewEntry), or its canonical
// content (the event without id, meta and chain extension, as Canonical gives
// it; lines of earlier versions carry this). Event renders either.
type Entry struct {
	ID        string
	Recorded  time.Time
	Canonical json.RawMessage
	record    *entryRecord
}

type journalWrite struct {
	line  []byte
	entry Entry
	seq   uint64
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
	entries, good, last, err := readJournal(f)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	size, err := preallocate(f, 0, journalSize)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	// New lines follow the recovered ones; in an empty journal they start
	// from the clock, so that sequences grow across restarts too and no older
	// line can pass for the successor of a newer one.
	seq := last + 1
	if len(entries) == 0 {
		seq = uint64(time.Now().UnixNano())
	}
	j := &Journal{path: path, max: max, f: f, durable: make(chan struct{}, 1), gather: make(chan struct{}, 1), backlog: len(entries), ready: entries, recovered: len(entries), off: good, seq: seq, size: size}
	j.extended = sync.NewCond(&j.mu)
	j.room, j.fullWait = make(chan struct{}), DefaultFullWait
	if len(entries) > 0 {
		j.durable <- struct{}{}
	}
	return j, len(entries), nil
}

// DefaultJournalMax is the default bound of entries waiting in a journal.
const DefaultJournalMax = 65536

// DefaultFullWait is how long Append waits, by default, for room in a full
// journal before it refuses with ErrJournalFull. Interactions that come
// faster than their AuditEvents are materialised are slowed to that pace
// (back-pressure) rather than refused; only a materialiser stalled for this
// long turns them away.
const DefaultFullWait = 5 * time.Second

// SetFullWait sets how long Append waits for room in a full journal before
// it refuses with ErrJournalFull (DefaultFullWait until set; 0 refuses at
// once).
func (j *Journal) SetFullWait(d time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.fullWait = d
}

// madeRoom wakes the Appends waiting for room. j.mu is held.
func (j *Journal) madeRoom() {
	close(j.room)
	j.room = make(chan struct{})
}

// waitForRoom waits, with j.mu held (and released while it waits), until the
// journal has room for one more entry, it is closed or failed, or fullWait
// has passed: then ErrJournalFull.
func (j *Journal) waitForRoom() error {
	var deadline <-chan time.Time
	for len(j.pending)+len(j.written)+j.backlog >= j.max {
		if j.closed || j.failed != nil {
			return nil // the caller reports which
		}
		if deadline == nil {
			if j.fullWait <= 0 {
				return ErrJournalFull
			}
			t := time.NewTimer(j.fullWait)
			defer t.Stop()
			deadline = t.C
		}
		room := j.room
		j.mu.Unlock()
		select {
		case <-room:
			j.mu.Lock()
		case <-deadline:
			j.mu.Lock()
			if len(j.pending)+len(j.written)+j.backlog >= j.max {
				return ErrJournalFull
			}
		}
	}
	return nil
}

// journalSize is the size the journal file is preallocated to at first, and
// the step by which it is extended ahead of the lines while many entries wait
// for their materialisation (a variable so that tests can make it small).
var journalSize int64 = 16 << 20

// journalAhead is how far before the preallocated end the next extension
// starts: far enough that the lines never catch it up.
func journalAhead() int64 { return journalSize / 4 }

// preallocate zero-fills f from from (or its end, if further) up to size
// bytes more than from, and fsyncs it, so that lines are written in place. It
// returns the size the file has then.
func preallocate(f *os.File, from, size int64) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := from + size
	if fi.Size() >= end {
		return fi.Size(), nil
	}
	zeros := make([]byte, min(1<<20, size))
	for off := max(from, fi.Size()); off < end; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), end-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return 0, err
		}
	}
	return end, syncData(f)
}

// extend preallocates another journalSize behind the file's end, in the
// background of the flushes: they write below the end meanwhile (or wait, if
// they would pass it). A failure leaves the file as it was: lines past its end
// then grow it, as any append would.
func (j *Journal) extend(f *os.File, from int64) {
	size, err := preallocate(f, from, journalSize)
	j.mu.Lock()
	if err == nil && size > j.size {
		j.size = size
	}
	j.extending = false
	j.extended.Broadcast()
	j.mu.Unlock()
}

// readJournal reads the good lines of a journal from its start: the entries,
// the offset after the last and its sequence.
func readJournal(r io.Reader) ([]Entry, int64, uint64, error) {
	var out []Entry
	var good int64
	var last uint64
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return out, good, last, nil // a line without its newline is torn
		}
		if err != nil {
			return nil, 0, 0, err
		}
		e, seq, ok := parseLine(line)
		if !ok || (len(out) > 0 && seq != last+1) {
			return out, good, last, nil
		}
		out = append(out, e)
		good += int64(len(line))
		last = seq
	}
}

func parseLine(line []byte) (Entry, uint64, bool) {
	if len(line) < 28 || line[8] != ' ' || line[25] != ' ' || line[len(line)-1] != '\n' {
		return Entry{}, 0, false
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return Entry{}, 0, false
	}
	if crc32.ChecksumIEEE(line[9:len(line)-1]) != uint32(sum[0])<<24|uint32(sum[1])<<16|uint32(sum[2])<<8|uint32(sum[3]) {
		return Entry{}, 0, false
	}
	seq, err := strconv.ParseUint(string(line[9:25]), 16, 64)
	if err != nil {
		return Entry{}, 0, false
	}
	var l entryLine
	if err := json.Unmarshal(line[26:len(line)-1], &l); err != nil || l.ID == "" || (l.Record == nil && len(l.Canonical) == 0) {
		return Entry{}, 0, false
	}
	return Entry{ID: l.ID, Recorded: l.Recorded, Canonical: l.Canonical, record: l.Record}, seq, true
}

// encodeEntry is the JSON of an entry, as its line carries it.
func encodeEntry(e Entry) ([]byte, error) {
	l := entryLine{ID: e.ID, Recorded: e.Recorded, Record: e.record}
	if e.record == nil {
		l.Canonical = e.Canonical
	}
	body, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(body, '\n') >= 0 {
		return nil, fmt.Errorf("journal entry %s has a newline", e.ID)
	}
	return body, nil
}

// linesSize is how many bytes the lines of ws take in the file.
func linesSize(ws []*journalWrite) int64 {
	var n int64
	for _, w := range ws {
		n += int64(len(w.line)) + lineOverhead
	}
	return n
}

// lineOverhead is what a line adds to its JSON: checksum, sequence, two
// spaces and the newline.
const lineOverhead = 8 + 1 + 16 + 1 + 1

// appendLine appends the line of an entry's JSON with its sequence to buf.
func appendLine(buf []byte, seq uint64, body []byte) []byte {
	start := len(buf)
	buf = fmt.Appendf(buf, "%08x %016x ", 0, seq)
	buf = append(buf, body...)
	sum := crc32.ChecksumIEEE(buf[start+9:])
	copy(buf[start:start+8], fmt.Appendf(nil, "%08x", sum))
	return append(buf, '\n')
}

// Append writes e to the journal and returns once it is durable (fsynced),
// sharing the write and fsync with every entry appended meanwhile. In a full
// journal it waits for room (SetFullWait) and then refuses with
// ErrJournalFull.
func (j *Journal) Append(e Entry) error {
	line, err := encodeEntry(e)
	if err != nil {
		return err
	}
	w := &journalWrite{line: line, entry: e, done: make(chan error, 1)}
	j.mu.Lock()
	if err := j.waitForRoom(); err != nil {
		j.mu.Unlock()
		return err
	}
	if j.closed {
		j.mu.Unlock()
		return errors.New("the audit journal is closed")
	}
	if j.failed != nil {
		err := j.failed
		j.mu.Unlock()
		return fmt.Errorf("the audit journal failed: %w", err)
	}
	j.pending = append(j.pending, w)
	if j.want > 0 && len(j.pending) >= j.want {
		j.want = 0
		select {
		case j.gather <- struct{}{}:
		default:
		}
	}
	if j.syncing < maxSyncs {
		j.syncing++
		go j.flush()
	}
	j.mu.Unlock()
	return <-w.done
}

// maxSyncs is how many flush goroutines (each writing a batch and then
// fdatasyncing it) may run at once. One: lines that arrive while an fdatasync
// is under way wait for it and share the next one. Two in flight (as before)
// split concurrent callers into cohorts of one or two lines each, and each
// fdatasync costs ~50-80 us of system CPU whatever it covers: measured with 8
// appenders, 1.7-2.4 lines per fdatasync and 25-34 cpu-us per append, against
// 8 lines and 9-14 cpu-us with one flush and the linger below.
const maxSyncs = 1

// maxLinger bounds how long a flush, after an fdatasync, waits for the
// callers it has just answered to come back before it writes the lines
// already waiting (see flush).
const maxLinger = 2 * time.Millisecond

// flush writes the waiting lines and fdatasyncs them, batch after batch,
// until none wait. After an fdatasync that answered some callers while
// others waited, it expects the answered ones back (an HTTP client's next
// request, a materialised page's next read): it waits until as many lines
// wait as there were callers in that round, or for as long as the
// fdatasync took (at most maxLinger), whichever comes first, so that they
// all share the next fdatasync instead of alternating in two half-size
// cohorts. A lone caller is never delayed (its round is itself), and a
// round whose callers do not come back costs one linger, after which the
// round's size is what came.
func (j *Journal) flush() {
	var buf []byte
	var timer *time.Timer
	want, linger := 0, time.Duration(0)
	for {
		j.mu.Lock()
		if want > len(j.pending) && j.failed == nil && !j.closed {
			select {
			case <-j.gather:
			default:
			}
			j.want = want
			j.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(linger)
			} else {
				timer.Reset(linger)
			}
			select {
			case <-j.gather:
				timer.Stop()
			case <-timer.C:
			}
			j.mu.Lock()
			j.want = 0
		}
		want = 0
		// Lines are written inside the preallocated part: an extension under
		// way (zero-filling past the end) is waited for, not overtaken.
		for j.extending && len(j.pending) > 0 && j.failed == nil && j.off+linesSize(j.pending) > j.size {
			j.extended.Wait()
		}
		batch := j.pending
		j.pending = nil
		if len(batch) == 0 || j.failed != nil {
			j.syncing--
			err := j.failed
			j.mu.Unlock()
			for _, w := range batch {
				w.done <- err
			}
			return
		}
		buf = buf[:0]
		for i, w := range batch {
			w.seq = j.seq + uint64(i)
			buf = appendLine(buf, w.seq, w.line)
		}
		if !j.extending && !j.closed && j.off+int64(len(buf)) > j.size-journalAhead() {
			j.extending = true
			go j.extend(j.f, max(j.size, j.off+int64(len(buf))))
		}
		if _, err := j.f.WriteAt(buf, j.off); err != nil {
			j.failed = err
			j.madeRoom() // Appends waiting for room are refused now
			j.mu.Unlock()
			for _, w := range batch {
				w.done <- err
			}
			continue
		}
		j.off += int64(len(buf))
		j.seq += uint64(len(batch))
		j.written = append(j.written, batch...)
		covered, f := j.seq-1, j.f
		j.mu.Unlock()

		t0 := time.Now()
		err := syncData(f)
		linger = min(time.Since(t0), maxLinger)

		j.mu.Lock()
		var done []*journalWrite
		if err != nil {
			// After a failed fsync the file's state is unknown: the journal
			// refuses everything from now on (the server answers 503).
			j.failed = err
			j.madeRoom() // Appends waiting for room are refused now
			done, j.written = j.written, nil
		} else {
			n := 0
			for n < len(j.written) && j.written[n].seq <= covered {
				n++
			}
			done = j.written[:n:n]
			j.written = j.written[n:]
			j.lastDurable = time.Now()
			j.backlog += len(done)
			for _, w := range done {
				j.ready = append(j.ready, w.entry)
			}
			j.syncs++
			want = len(done) + len(j.pending) // this round's callers
			if len(done) > 0 {
				select {
				case j.durable <- struct{}{}:
				default:
				}
			}
		}
		j.mu.Unlock()
		for _, w := range done {
			w.done <- err
		}
	}
}

// Durable is signalled when entries become durable: the materialiser waits on
// it and then calls Take.
func (j *Journal) Durable() <-chan struct{} { return j.durable }

// Kick is the sending side of Durable, for a materialiser that wants to look
// again (after a failure) without a new entry.
func (j *Journal) Kick() chan<- struct{} { return j.durable }

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
	if n > 0 {
		j.madeRoom()
	}
	if j.backlog > 0 || len(j.pending) > 0 || len(j.written) > 0 || len(j.ready) > 0 || j.closed {
		return nil
	}
	// Everything written is materialised: the next line goes to the start.
	j.off = 0
	return nil
}

// Busy reports whether entries became durable within the last d, and the
// number durable but not yet materialised: the materialiser leaves the disk
// to the appenders while they are busy and the backlog is small.
func (j *Journal) Busy(d time.Duration) (busy bool, backlog int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return time.Since(j.lastDurable) < d, j.backlog
}

// Syncs is how many fdatasyncs have made lines durable: with the number of
// entries appended, the group commit's batch size (benchmarks report it).
func (j *Journal) Syncs() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncs
}

// Max is the journal's bound on entries waiting.
func (j *Journal) Max() int { return j.max }

// Depth is the number of entries waiting for their fsync or their
// materialisation (for metrics).
func (j *Journal) Depth() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending) + len(j.written) + j.backlog
}

// Close closes the file; entries not yet materialised stay in it for the next
// Open.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing > 0 || j.extending { // let the fsyncs under way finish and answer their callers
		j.mu.Unlock()
		time.Sleep(time.Millisecond)
		j.mu.Lock()
	}
	if j.closed {
		return nil
	}
	j.closed = true
	j.madeRoom()
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
