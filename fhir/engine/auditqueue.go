package engine

import (
	"context"
	"sync"

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
// commit (for metrics: a growing depth means the store cannot keep up).
func (e *Engine) AuditQueueDepth() int { return e.auditQ.depth() }
