package subscriptions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

// Notification types (SubscriptionStatus.type).
const (
	typeHandshake = "handshake"
	typeHeartbeat = "heartbeat"
	typeEvent     = "event-notification"
	typeStatus    = "query-status"
	typeQuery     = "query-event"
)

// numbered is an event with its number.
type numbered struct {
	n  int
	ev event
}

// specOf returns the subscription's current spec.
func (m *Manager) specOf(s *sub) *spec {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return s.spec
}

// deliver is a subscription's delivery goroutine: handshake while
// requested, then its events in order, max-count at a time, and heartbeats
// when idle. A failed attempt is retried after an exponential back-off; so
// many in a row set the status to error, then off (which ends it). Only
// this goroutine posts to the subscription's endpoint, so a receiver that
// hangs holds up nobody else, and each post is bounded by the
// subscription's timeout. With nothing to do it parks (park.go), leaving
// its progress (saved) to the next one.
func (m *Manager) deliver(s *sub, saved *state) {
	ctx := m.ctx
	octx := auth.WithPrincipal(ctx, s.owner)
	var st state
	if saved != nil {
		st = *saved
	} else {
		var err error
		if st, _, err = m.readState(ctx, s.spec.ID); err != nil {
			m.cfg.Log.Error("subscription state unreadable", "id", s.spec.ID, "error", err.Error())
			s.exited(nil)
			return
		}
	}
	for {
		sp := m.specOf(s)
		if sp.ended(m.cfg.Now()) && m.count(ctx, sp.ID) <= st.Delivered {
			// Events recorded before the end are delivered first; then it is off.
			m.setStatus(ctx, sp.ID, "off", "Subscription.end ("+sp.End.UTC().Format(time.RFC3339)+") has passed")
			s.exited(&st)
			return
		}
		wait := time.Duration(-1) // until woken
		sent, err := m.step(ctx, octx, s, sp, &st)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			st.Failures++
			m.cfg.Log.Warn("subscription delivery failed", "id", sp.ID, "failures", st.Failures, "error", err.Error())
			m.saveState(ctx, sp.ID, st)
			if st.Failures >= m.cfg.OffAfter {
				m.setStatus(ctx, sp.ID, "off", fmt.Sprintf("%d deliveries failed in a row; the last: %v", st.Failures, err))
				s.exited(&st)
				return
			}
			if st.Failures >= m.cfg.ErrorAfter && sp.Status != "error" {
				m.setStatus(ctx, sp.ID, "error", err.Error())
			}
			wait = m.backoff(st.Failures)
			// a back-off is not cut short by new events
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		case sent:
			wait = 0 // more may be waiting
		case sp.Heartbeat > 0:
			wait = time.Until(st.LastSent.Add(sp.Heartbeat))
			if wait < 0 {
				wait = 0
			}
		}
		if !sp.End.IsZero() {
			if until := max(time.Until(sp.End), 0); wait < 0 || until < wait {
				wait = until // wake at the end to turn it off
			}
		}
		if wait == 0 {
			select {
			case <-s.stop:
				return
			default:
				continue
			}
		}
		if m.park(s, st, wait) {
			return
		}
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
	}
}

// backoff is the wait after n failures in a row.
func (m *Manager) backoff(n int) time.Duration {
	d := m.cfg.RetryBase
	for i := 1; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.RetryMax)
}

// step does one delivery: the handshake, the next events, or a heartbeat
// when one is due. sent says something was delivered and more may follow.
func (m *Manager) step(ctx, octx context.Context, s *sub, sp *spec, st *state) (sent bool, err error) {
	now := m.cfg.Now()
	if sp.Status == "requested" || !st.Handshook {
		if err := m.post(octx, sp, typeHandshake, m.count(ctx, sp.ID), nil); err != nil {
			return false, err
		}
		st.Failures, st.LastSent, st.Handshook = 0, now, true
		m.saveState(ctx, sp.ID, *st)
		return false, m.setStatus(ctx, sp.ID, "active", "")
	}
	total := m.count(ctx, sp.ID)
	if total > st.Delivered {
		evs, err := m.events(ctx, sp.ID, st.Delivered+1, min(total, st.Delivered+sp.MaxCount))
		if err != nil {
			return false, err
		}
		if err := m.post(octx, sp, typeEvent, total, evs); err != nil {
			return false, err
		}
		st.Delivered, st.Failures, st.LastSent = evs[len(evs)-1].n, 0, now
		m.saveState(ctx, sp.ID, *st)
		if sp.Status == "error" {
			if err := m.setStatus(ctx, sp.ID, "active", ""); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	if sp.Heartbeat > 0 && !now.Before(st.LastSent.Add(sp.Heartbeat)) {
		if err := m.post(octx, sp, typeHeartbeat, total, nil); err != nil {
			return false, err
		}
		st.Failures, st.LastSent = 0, now
		if sp.Status == "error" {
			m.saveState(ctx, sp.ID, *st)
			return false, m.setStatus(ctx, sp.ID, "active", "")
		}
	}
	return false, nil
}

// count returns how many events subscription id has had.
func (m *Manager) count(ctx context.Context, id string) int {
	n, err := m.lastEvent(ctx, func(ctx context.Context, typ, id string) (store.Version, error) {
		return m.eng.OutboxRead(ctx, typ, id, 0)
	}, id, false)
	if err != nil {
		return 0
	}
	return n
}

// events reads events from..to of subscription id.
func (m *Manager) events(ctx context.Context, id string, from, to int) ([]numbered, error) {
	out := make([]numbered, 0, to-from+1)
	for n := from; n <= to; n++ {
		v, err := m.readEvent(ctx, id, n)
		if err != nil {
			return nil, err
		}
		var ev event
		if err := json.Unmarshal(v.Body, &ev); err != nil {
			return nil, fhir.InternalError("subscription event", err)
		}
		out = append(out, numbered{n: n, ev: ev})
	}
	return out, nil
}

func (m *Manager) saveState(ctx context.Context, id string, st state) {
	err := m.eng.OutboxWrite(ctx, func(tx engine.OutboxTx) error { return putState(ctx, tx, id, st, m.cfg.Now()) })
	if err != nil && ctx.Err() == nil {
		m.cfg.Log.Error("subscription state not saved", "id", id, "error", err.Error())
	}
}

// setStatus changes the Subscription's status (and error) as the server,
// through the engine.
func (m *Manager) setStatus(ctx context.Context, id, status, why string) error {
	sctx := auth.WithPrincipal(ctx, system)
	for try := 0; try < 3; try++ {
		v, err := m.eng.Read(sctx, "Subscription", id)
		if err != nil {
			return err
		}
		obj, err := fhir.Parse(v.Body, fhir.DefaultLimits)
		if err != nil {
			return err
		}
		obj["status"] = status
		delete(obj, "error")
		if why != "" {
			obj["error"] = why
		}
		body, err := fhir.MarshalOrdered(obj, fhir.KeyOrder(v.Body))
		if err != nil {
			return fhir.InternalError("subscription status", err)
		}
		_, err = m.eng.Update(sctx, "Subscription", id, body, v.VersionID)
		if fhir.KindOf(err) == fhir.PreconditionFailed {
			continue
		}
		if err != nil && ctx.Err() == nil {
			m.cfg.Log.Error("subscription status not changed", "id", id, "status", status, "error", err.Error())
		}
		return err
	}
	return fhir.Errorf(fhir.Conflict, "", "Subscription/%s kept changing", id)
}

// maxReply bounds what is read of a receiver's reply.
const maxReply = 64 << 10

// post sends one notification to the subscription's endpoint as its owner,
// audited.
func (m *Manager) post(octx context.Context, sp *spec, typ string, total int, evs []numbered) error {
	body, entities, err := m.notification(octx, sp, typ, total, evs, sp.Payload, sp.Status)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(octx, sp.Timeout)
	defer cancel()
	err = m.send(ctx, sp, body)
	rec := audit.Record{Interaction: "operation", Action: "E", Query: "subscription " + typ + " to " + sp.Host, Entities: entities, Server: m.eng.Base()}
	if err != nil {
		rec.Outcome = fhir.Errorf(fhir.Unavailable, "", "delivery failed: %v", err)
	}
	if aerr := m.eng.Audit(octx, rec); aerr != nil && err == nil {
		err = aerr // not audited: not counted as delivered, sent again later
	}
	return err
}

func (m *Manager) send(ctx context.Context, sp *spec, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sp.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range sp.Headers {
		req.Header.Add(h[0], h[1])
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := m.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxReply))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the endpoint answered %s", resp.Status)
	}
	return nil
}

// notification builds the history Bundle of a notification (or the answer
// to $events): the SubscriptionStatus Parameters first, then one entry per
// event unless the payload is empty; the resources themselves for
// full-resource, read through the engine as the owner (each read policed
// and audited; one the owner may no longer read goes as its id only).
//
// A note, when given, is the SubscriptionStatus's error (events $events
// could not give).
func (m *Manager) notification(octx context.Context, sp *spec, typ string, total int, evs []numbered, payload, status string, note ...string) ([]byte, []string, error) {
	base := m.eng.Base()
	subURL := base + "/Subscription/" + sp.ID
	entities := []string{"Subscription/" + sp.ID}
	params := []any{
		map[string]any{"name": "subscription", "valueReference": map[string]any{"reference": subURL}},
		map[string]any{"name": "topic", "valueCanonical": sp.Topic.URL},
		map[string]any{"name": "status", "valueCode": status},
		map[string]any{"name": "type", "valueCode": typ},
		map[string]any{"name": "events-since-subscription-start", "valueString": strconv.Itoa(total)},
	}
	entries := []any{}
	for _, e := range evs {
		part := []any{
			map[string]any{"name": "event-number", "valueString": strconv.Itoa(e.n)},
			map[string]any{"name": "timestamp", "valueInstant": e.ev.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00")},
		}
		if payload != PayloadEmpty {
			part = append(part, map[string]any{"name": "focus", "valueReference": map[string]any{"reference": base + "/" + e.ev.Focus}})
			entities = append(entities, e.ev.Focus+"/_history/"+strconv.Itoa(e.ev.Version))
			entry := map[string]any{"fullUrl": base + "/" + e.ev.Focus}
			method, url, code := "PUT", e.ev.Focus, "200"
			switch e.ev.Interaction {
			case "create":
				method, url, code = "POST", sp.Topic.Resource, "201"
			case "delete": // no resource: a history entry of a delete
				method, code = "DELETE", "204"
			}
			if payload == PayloadFull {
				typ, id, _ := cut(e.ev.Focus)
				if v, err := m.eng.VRead(octx, typ, id, strconv.Itoa(e.ev.Version)); err == nil && !v.Deleted {
					res, err := fhir.Parse(v.Body, fhir.DefaultLimits)
					if err != nil {
						return nil, nil, err
					}
					entry["resource"] = res
				}
			}
			entry["request"] = map[string]any{"method": method, "url": url}
			entry["response"] = map[string]any{"status": code}
			entries = append(entries, entry)
		}
		params = append(params, map[string]any{"name": "notification-event", "part": part})
	}
	for _, text := range note {
		params = append(params, map[string]any{"name": "error", "valueCodeableConcept": map[string]any{"text": text}})
	}
	statusID := fhir.NewUUID()
	first := map[string]any{
		"fullUrl": "urn:uuid:" + statusID,
		"resource": map[string]any{
			"resourceType": "Parameters", "id": statusID,
			"meta":      map[string]any{"profile": []any{StatusProfile}},
			"parameter": params,
		},
		"request":  map[string]any{"method": "GET", "url": "Subscription/" + sp.ID + "/$status"},
		"response": map[string]any{"status": "200"},
	}
	bundleType := "history"
	if typ == typeStatus {
		bundleType = "searchset"
		delete(first, "request")
		delete(first, "response")
		first["search"] = map[string]any{"mode": "match"}
	}
	b := map[string]any{
		"resourceType": "Bundle", "id": fhir.NewUUID(), "type": bundleType,
		"timestamp": m.cfg.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"entry":     append([]any{first}, entries...),
	}
	out, err := fhir.MarshalOrdered(b, nil)
	if err != nil {
		return nil, nil, fhir.InternalError("notification", err)
	}
	return out, entities, nil
}

func cut(ref string) (string, string, bool) {
	for i := 0; i < len(ref); i++ {
		if ref[i] == '/' {
			return ref[:i], ref[i+1:], true
		}
	}
	return ref, "", false
}
