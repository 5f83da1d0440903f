package mapping

import (
	"context"
	"strconv"

	"crs/fhir"
)

// Pipeline writes an importer's batches one behind the other: while a batch
// is being written (its transaction validated, stored and committed), the
// importer reads, looks up and maps the next one. A batch depends on the one
// before only through the persons both name, so a batch that names a person
// (any of its keys: an NHS number, a local person reference, or an
// identifier of a Patient the batch matched) of the batch still being
// written waits for that write before it looks anything up, and then sees it
// as it would have one batch at a time. Batches of different persons are
// written in either order; each is still one transaction (or one per person
// after a failure), and the summary and report count the same.
//
// A batch's report lines (rejected, held) reach the report when the batch is
// joined, after the next batch's reading and mapping lines: within two
// batches, the report is not in line order.
type Pipeline struct {
	Door   Door
	DryRun bool
	Report *Report

	cur *inflight
}

// inflight is a batch being written in the background.
type inflight struct {
	done chan struct{}
	err  error
	rep  *Report // its counts and lines, merged into the Pipeline's report when joined
	keys map[string]bool
}

// Busy reports whether the batch being written names any of keys: the
// caller then waits for it (Wait) before looking its own batch up.
func (p *Pipeline) Busy(keys map[string]bool) bool {
	if p.cur == nil {
		return false
	}
	for k := range keys {
		if p.cur.keys[k] {
			return true
		}
	}
	return false
}

// Wait waits for the batch being written, if any, and adds its outcome to
// the report; its error (a cancelled context, a failed door) is returned.
func (p *Pipeline) Wait() error {
	cur := p.cur
	if cur == nil {
		return nil
	}
	p.cur = nil
	<-cur.done
	p.Report.merge(cur.rep)
	return cur.err
}

// Commit starts writing groups (as Commit does) in the background, keyed on
// the persons they name, then waits for the batch before it. A dry run
// counts at once.
func (p *Pipeline) Commit(ctx context.Context, groups []Group, keys map[string]bool) error {
	if p.DryRun {
		if err := p.Wait(); err != nil {
			return err
		}
		return Commit(ctx, p.Door, groups, true, p.Report)
	}
	next := &inflight{done: make(chan struct{}), rep: &Report{lines: [][]string{}}, keys: keys}
	go func() {
		defer close(next.done)
		next.err = Commit(ctx, p.Door, groups, false, next.rep)
	}()
	err := p.Wait()
	p.cur = next
	if err != nil {
		if werr := p.Wait(); werr != nil && ctx.Err() == nil {
			return werr
		}
		return err
	}
	return nil
}

// PersonKeys are the keys of persons for Pipeline.Busy: each system|value
// of the identifiers with the given systems of the Patients, and the values
// given (already system|value).
func PersonKeys(patients []fhir.Object, systems []string, values ...string) map[string]bool {
	keys := make(map[string]bool, len(values)+len(patients))
	for _, v := range values {
		keys[v] = true
	}
	for _, pat := range patients {
		for _, s := range systems {
			for _, v := range Identifiers(pat, s) {
				keys[s+"|"+v] = true
			}
		}
	}
	return keys
}

// merge adds a batch's counts and report lines (kept in sub.lines) to r.
func (r *Report) merge(sub *Report) {
	r.Rows += sub.Rows
	r.Created += sub.Created
	r.Updated += sub.Updated
	r.Unchanged += sub.Unchanged
	r.Held += sub.Held
	r.Rejected += sub.Rejected
	r.Skipped += sub.Skipped
	if r.w != nil {
		for _, l := range sub.lines {
			_ = r.w.Write(l)
		}
	} else if r.lines != nil {
		r.lines = append(r.lines, sub.lines...)
	}
}

// line is one report line as written.
func reportLine(line int, field, outcome, reason string) []string {
	return []string{strconv.Itoa(line), field, outcome, reason}
}
