package subscriptions

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/engine"
)

// subscription reads Subscription/id through the engine as the caller
// (policed and audited: a caller who may not read it learns nothing more).
func (m *Manager) subscription(ctx context.Context, id string) (*spec, error) {
	if !fhir.ValidID(id) {
		return nil, fhir.Errorf(fhir.Invalid, "", "invalid Subscription id %q", id)
	}
	v, err := m.eng.Read(ctx, "Subscription", id)
	if err != nil {
		return nil, err
	}
	obj, err := fhir.Parse(v.Body, fhir.DefaultLimits)
	if err != nil {
		return nil, err
	}
	sp, err := parseSpec(obj, m.topics, m.eng.ParseFilter)
	if err != nil {
		return nil, fhir.Errorf(fhir.Invalid, "", "Subscription/%s cannot be served: %s", id, messageOf(err))
	}
	return sp, nil
}

// Status answers Subscription/{id}/$status: a searchset Bundle holding the
// SubscriptionStatus (query-status) with its status and event count.
func (m *Manager) Status(ctx context.Context, id string) (body []byte, err error) {
	rec := audit.Record{Interaction: "operation", Action: "E", Query: "$status", Entities: []string{"Subscription/" + id}}
	defer func() { err = m.audited(ctx, rec, err) }()
	sp, err := m.subscription(ctx, id)
	if err != nil {
		return nil, err
	}
	body, _, err = m.notification(ctx, sp, typeStatus, m.count(ctx, id), nil, PayloadEmpty, sp.Status)
	return body, err
}

// maxStatuses bounds the Subscriptions one type-level $status reports.
const maxStatuses = 100

// StatusAll answers Subscription/$status (type level): a searchset Bundle
// with the SubscriptionStatus (query-status) of every Subscription the caller
// may read, or of those named by id (repeated or comma-separated) and those
// whose status is one of status. More than maxStatuses is refused as too
// costly: ask by id or status.
func (m *Manager) StatusAll(ctx context.Context, q url.Values) (body []byte, err error) {
	rec := audit.Record{Interaction: "operation", Action: "E", Query: "$status?" + q.Encode()}
	defer func() { err = m.audited(ctx, rec, err) }()
	params := []fhir.RawParam{{Name: "_count", Value: strconv.Itoa(maxStatuses)}, {Name: "_sort", Value: "_id"}}
	for name, vs := range q {
		switch name {
		case "id":
			params = append(params, fhir.RawParam{Name: "_id", Value: strings.Join(vs, ",")})
		case "status":
			params = append(params, fhir.RawParam{Name: "status", Value: strings.Join(vs, ",")})
		case "_format":
		default:
			return nil, fhir.Errorf(fhir.Invalid, name, "$status has no parameter %q (it has id, status)", name)
		}
	}
	found, err := m.eng.Search(ctx, "Subscription", params, engine.SearchOptions{})
	if err != nil {
		return nil, err
	}
	for _, l := range found.Link {
		if l.Relation == "next" {
			return nil, fhir.Errorf(fhir.TooCostly, "", "more than %d Subscriptions: ask for some by id or status", maxStatuses)
		}
	}
	var entries []any
	for _, e := range found.Entry {
		obj, err := fhir.Parse(e.Resource, fhir.DefaultLimits)
		if err != nil {
			return nil, err
		}
		sp, err := parseSpec(obj, m.topics, m.eng.ParseFilter)
		if err != nil {
			continue // not one crs can serve: it has no status to report
		}
		rec.Entities = append(rec.Entities, "Subscription/"+sp.ID)
		one, _, err := m.notification(ctx, sp, typeStatus, m.count(ctx, sp.ID), nil, PayloadEmpty, sp.Status)
		if err != nil {
			return nil, err
		}
		var b struct {
			Entry []any `json:"entry"`
		}
		if err := json.Unmarshal(one, &b); err != nil || len(b.Entry) == 0 {
			return nil, fhir.InternalError("$status", err)
		}
		entries = append(entries, b.Entry[0])
	}
	b := map[string]any{
		"resourceType": "Bundle", "id": fhir.NewUUID(), "type": "searchset",
		"timestamp": m.cfg.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"total":     len(entries),
	}
	if len(entries) > 0 {
		b["entry"] = entries // FHIR JSON has no empty arrays
	}
	out, err := fhir.MarshalOrdered(b, nil)
	if err != nil {
		return nil, fhir.InternalError("$status", err)
	}
	return out, nil
}

// Events answers Subscription/{id}/$events: the events numbered
// eventsSinceNumber (default 1) to eventsUntilNumber (default the last), at
// most the subscription's max-count of them from the first, as a history
// Bundle like a notification (query-event); content (empty, id-only,
// full-resource) defaults to the subscription's payload content.
func (m *Manager) Events(ctx context.Context, id string, q url.Values) (body []byte, err error) {
	rec := audit.Record{Interaction: "operation", Action: "E", Query: "$events?" + q.Encode(), Entities: []string{"Subscription/" + id}}
	defer func() { err = m.audited(ctx, rec, err) }()
	for name := range q {
		switch name {
		case "eventsSinceNumber", "eventsUntilNumber", "content", "_format":
		default:
			return nil, fhir.Errorf(fhir.Invalid, name, "$events has no parameter %q (it has eventsSinceNumber, eventsUntilNumber, content)", name)
		}
	}
	sp, err := m.subscription(ctx, id)
	if err != nil {
		return nil, err
	}
	total := m.count(ctx, id)
	from, err := eventNumber(q, "eventsSinceNumber", 1)
	if err != nil {
		return nil, err
	}
	to, err := eventNumber(q, "eventsUntilNumber", total)
	if err != nil {
		return nil, err
	}
	from = max(from, 1)
	var note []string
	if from <= min(to, total) {
		first, err := m.firstKept(ctx, id, total)
		if err != nil {
			return nil, err
		}
		legacy := m.counts.get(id).legacy // read by firstKept
		if from < first && first > legacy+1 {
			note = append(note, fmt.Sprintf("events %d to %d were removed from the outbox after their retention (%v); the oldest kept is event %d", max(from, legacy+1), min(first-1, to), m.cfg.Retention, first))
			from = first
		}
	}
	to = min(to, total, from+MaxMax-1, from+sp.MaxCount-1)
	payload := sp.Payload
	if c := q.Get("content"); c != "" {
		switch c {
		case PayloadEmpty, PayloadIDs, PayloadFull:
			payload = c
		default:
			return nil, fhir.Errorf(fhir.Invalid, "content", "content %q is not one of empty, id-only, full-resource", c)
		}
	}
	var evs []numbered
	if from <= to {
		if evs, err = m.events(ctx, id, from, to); err != nil {
			return nil, err
		}
	}
	body, _, err = m.notification(ctx, sp, typeQuery, total, evs, payload, sp.Status, note...)
	return body, err
}

// eventNumber reads a non-negative event number parameter.
func eventNumber(q url.Values, name string, def int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fhir.Errorf(fhir.Invalid, name, "%s is a non-negative whole number, not %q", name, s)
	}
	return n, nil
}

// audited records an operation's outcome; an operation that cannot be
// audited is refused.
func (m *Manager) audited(ctx context.Context, rec audit.Record, err error) error {
	rec.Server = m.eng.Base()
	if err != nil {
		if fe, ok := err.(*fhir.Error); ok {
			rec.Outcome = fe
		}
	}
	if aerr := m.eng.Audit(ctx, rec); aerr != nil && err == nil {
		return fhir.Errorf(fhir.Unavailable, "", "the operation could not be recorded in the audit trail; try again later")
	}
	return err
}
