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
// materialisation — for metrics: a growing depth means the store cannot keep
// up, and at the configured bound interactions are refused with 503.
func (e *Engine) AuditQueueDepth() int {
	if e.journal != nil {
		return e.journal.Depth()
	}
	return e.auditQ.depth()
}

// materialiseBatch is how many journal entries one store transaction stores.
const materialiseBatch = 1000

// materialise stores the audit journal's durable entries as AuditEvent
// resources, linked in the hash chain in journal order, a batch per store
// transaction, until Close. A failed batch is tried again (its entries stay
// in the journal file meanwhile, so none is lost).
func (e *Engine) materialise() {
	defer close(e.matDone)
	stopping := false
	for {
		if !stopping {
			select {
			case <-e.journal.Durable():
			case <-e.matStop:
				stopping = true
			}
		}
		for {
			batch := e.journal.Take(materialiseBatch)
			if len(batch) == 0 {
				break
			}
			if err := e.materialiseEntries(batch, e.journal.Recovered(len(batch))); err != nil {
				e.journal.Requeue(batch)
				if stopping {
					return // the entries stay in the journal for the next start
				}
				select {
				case <-e.matStop:
					stopping = true
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			_ = e.journal.Materialised(len(batch))
		}
		if stopping {
			return
		}
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
		for i, p := range prepared {
			if i < recovered {
				if _, err := tx.Read(ctx, "AuditEvent", p.version.ID); err == nil {
					continue
				} else if fhir.KindOf(err) != fhir.NotFound {
					return err
				}
			}
			if err := e.appendAudit(ctx, tx, p); err != nil {
				return err
			}
		}
		return nil
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
