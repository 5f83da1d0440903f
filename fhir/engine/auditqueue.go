package engine

import (
	"context"
	"sync"
	"time"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/store"
)

// DefaultAuditQueue is how many AuditEvents may wait for their commit before
// the engine refuses further interactions with Unavailable (503) rather than
// answer them unrecorded.
const DefaultAuditQueue = 8192

// auditQueue group-commits the AuditEvents of interactions that write nothing
// (reads, searches, refusals): events that arrive while a commit is under way
// wait together and are stored, linked in the hash chain, in the next single
// store transaction. Each caller returns only when its own event is durable.
// A write's AuditEvent does not come here: it is stored in the write's own
// transaction (durable with it, or not at all).
type auditQueue struct {
	store store.Store
	e     *Engine
	max   int

	mu       sync.Mutex
	pending  []*auditJob
	inFlight int  // events in the commit under way
	flushing bool // a commit is under way (or about to be)
}

type auditJob struct {
	p    *preparedAudit
	done chan error
}

// add queues p and waits until it is durable. A full queue is Unavailable at once.
func (q *auditQueue) add(p *preparedAudit) error {
	job := &auditJob{p: p, done: make(chan error, 1)}
	q.mu.Lock()
	if len(q.pending)+q.inFlight >= q.max {
		q.mu.Unlock()
		return fhir.Errorf(fhir.Unavailable, "", "the audit queue is full (%d events waiting)", q.max)
	}
	q.pending = append(q.pending, job)
	if !q.flushing {
		q.flushing = true
		go q.flush()
	}
	q.mu.Unlock()
	return <-job.done
}

// flush commits the waiting events, batch after batch, until none wait.
func (q *auditQueue) flush() {
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		q.inFlight = len(batch)
		if len(batch) == 0 {
			q.flushing = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		// Not the callers' contexts: one caller giving up must not fail the others.
		ctx := context.Background()
		err := q.store.Write(ctx, func(tx store.Tx) error {
			for _, j := range batch {
				if err := q.e.appendAudit(ctx, tx, j.p); err != nil {
					return err
				}
			}
			return nil
		})
		for _, j := range batch {
			j.done <- err
		}
		q.mu.Lock()
		q.inFlight = 0
		q.mu.Unlock()
	}
}

// depth is the number of AuditEvents waiting for or in a commit.
func (q *auditQueue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending) + q.inFlight
}

// AuditQueueDepth is the number of AuditEvents waiting for their durable
// commit, or (with an audit journal) for their fsync or their
// materialisation (the journal's entries and the writes' pending audit
// records) — for metrics: a growing depth means the store cannot keep
// up, and at the configured bound interactions are refused with 503.
func (e *Engine) AuditQueueDepth() int {
	if e.journal != nil {
		return e.journal.Depth() + e.pending.backlog()
	}
	return e.auditQ.depth()
}

// materialiseBatch is how many journal entries one store transaction stores:
// enough to share a commit among many, few enough that interactions coming
// back after a quiet moment wait for at most one such commit.
const materialiseBatch = 500

// materialiseIdle is how long the journal must have been quiet before its
// entries are materialised while the backlog is below a quarter of the
// journal's bound: a store commit running beside the journal's fdatasync
// makes every fsync of both wait for the other (measured: reads at c=8 went
// from 2,730/s to 750/s when materialising alongside).
const materialiseIdle = 20 * time.Millisecond

// materialise stores the audit journal's durable entries as AuditEvent
// resources, linked in the hash chain in journal order, a batch per store
// transaction, until Close. A failed batch is tried again (its entries stay
// in the journal file meanwhile, so none is lost).
func (e *Engine) materialise() {
	defer close(e.matDone)
	stopping := false
	var recheck <-chan time.Time // a look at the pending rows some time after one was put
	for {
		var waiters []chan struct{}
		force := false // look for pending rows even if none was put since the last look
		if !stopping {
			select {
			case <-e.journal.Durable():
			case <-e.pending.wake:
				if recheck == nil {
					recheck = time.After(pendingRecheck)
				}
			case <-recheck:
				recheck, force = nil, true
			case w := <-e.matNow:
				waiters = append(waiters, w)
			case <-e.matStop:
				stopping = true
			}
		}
		if waiters != nil || stopping || e.pending.checked < 0 {
			force = true
		}
		for !stopping && waiters == nil {
			if !e.busy() {
				break
			}
			select {
			case <-e.matStop:
				stopping, force = true, true
			case w := <-e.matNow:
				waiters, force = append(waiters, w), true
			case <-time.After(materialiseIdle):
			}
		}
		failed, yielded := false, false
		for {
			// Between batches, interactions that came back get the disk and
			// the writer (unless the backlog is large, or someone waits).
			if waiters == nil && !stopping && e.busy() {
				yielded = true
				break
			}
			// A write's pending audit records first (they were committed
			// before this look), then the journal's entries: the chain's order.
			n, deferred, err := e.materialisePending(force, waiters != nil || stopping)
			if err != nil {
				failed = true
				break
			}
			if deferred && recheck == nil {
				recheck = time.After(pendingIdle) // come back once the writes pause
			}
			batch := e.journal.Take(materialiseBatch)
			if len(batch) == 0 {
				if n < materialiseBatch {
					break
				}
				continue
			}
			if err := e.materialiseEntries(batch, e.journal.Recovered(len(batch))); err != nil {
				// The entries stay in the journal file; they are tried again
				// later, or at the next start.
				e.journal.Requeue(batch)
				failed = true
				break
			}
			_ = e.journal.Materialised(len(batch))
		}
		for _, w := range waiters {
			close(w)
		}
		if stopping {
			return
		}
		if failed {
			select {
			case <-e.matStop:
				stopping = true
			case <-time.After(100 * time.Millisecond):
			}
		}
		if failed || yielded {
			// Come back to what is left even without a new entry (after a
			// yield, once the journal is quiet again).
			e.pending.checked = -1 // and look at the pending rows then
			select {
			case e.journal.Kick() <- struct{}{}:
			default:
			}
		}
	}
}

// busy reports whether interactions are under way (entries became durable in
// the journal, or writes put pending audit records, within materialiseIdle)
// while the backlog is below a quarter of the journal's bound: then the
// materialiser leaves the disk and the writer to them.
func (e *Engine) busy() bool {
	jbusy, backlog := e.journal.Busy(materialiseIdle)
	if !jbusy && !e.pending.busy(materialiseIdle) {
		return false
	}
	return backlog+e.pending.backlog() < e.journal.Max()/4
}

// materialiseNow stores every AuditEvent durable in the journal so far as a
// resource before it returns, so that a search, read or history of
// AuditEvents sees every interaction already answered.
func (e *Engine) materialiseNow(ctx context.Context) {
	if e.journal == nil {
		return
	}
	done := make(chan struct{})
	select {
	case e.matNow <- done:
	case <-e.matDone:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// materialiseEntries stores entries in one transaction. The first recovered
// of them came from the journal file at start and are skipped when an earlier
// run stored them already.
func (e *Engine) materialiseEntries(entries []audit.Entry, recovered int) error {
	prepared := make([]*preparedAudit, 0, len(entries))
	for _, en := range entries {
		p, err := e.prepareEntry(en)
		if err != nil {
			return err
		}
		prepared = append(prepared, p)
	}
	ctx := context.Background()
	return e.store.Write(ctx, func(tx store.Tx) error {
		// The chain's last hash is read once; then each event links after
		// the one stored before it (nothing else writes AuditEvents in this
		// transaction: the store has one writer).
		// They are stored together (auditBatch), before anything reads
		// AuditEvents in tx again.
		var batch auditBatch
		prev, known := "", false
		for i, p := range prepared {
			if i < recovered {
				if err := batch.flush(ctx, tx); err != nil {
					return err
				}
				if _, err := tx.Read(ctx, "AuditEvent", p.version.ID); err == nil {
					known = false // stored by an earlier run: read the chain's end again
					continue
				} else if fhir.KindOf(err) != fhir.NotFound {
					return err
				}
			}
			if !known {
				if err := batch.flush(ctx, tx); err != nil {
					return err
				}
				var err error
				if prev, err = lastAuditHash(ctx, tx); err != nil {
					return err
				}
				known = true
			}
			var err error
			if prev, err = batch.link(p, prev); err != nil {
				return err
			}
		}
		return batch.flush(ctx, tx)
	})
}

// Close stops the engine's background work: with an audit journal, what is
// durable in it is materialised first (what cannot be stays in the journal
// for the next start). Call it after the doors have stopped, before the store
// and the journal are closed.
func (e *Engine) Close() error {
	if e.journal == nil {
		return nil
	}
	e.closeOnce.Do(func() { close(e.matStop) })
	<-e.matDone
	return nil
}
