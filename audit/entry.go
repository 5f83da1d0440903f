package audit

import (
	"encoding/json"
	"time"

	"crs/auth"
	"crs/fhir"
)

// entryRecord is a Record as a journal line keeps it: what its AuditEvent
// says and no more, in a few short fields. Rendering the AuditEvent (a few
// dozen maps, then its canonical JSON) waits for the materialiser, so an
// interaction pays only for this small encoding before its line is written.
type entryRecord struct {
	Kind        string    `json:"k,omitempty"`
	Interaction string    `json:"i"`
	Action      string    `json:"a"`
	Outcome     string    `json:"o,omitempty"` // the AuditEvent's outcome code; "" is success ("0")
	Desc        string    `json:"d,omitempty"` // its outcomeDesc
	Entities    []string  `json:"e,omitempty"`
	Patient     string    `json:"p,omitempty"`
	Query       string    `json:"q,omitempty"`
	RequestID   string    `json:"x,omitempty"`
	Remote      string    `json:"ra,omitempty"`
	Peer        string    `json:"pa,omitempty"`
	Forwarded   string    `json:"fw,omitempty"`
	Server      string    `json:"s,omitempty"`
	Who         *entryWho `json:"w,omitempty"`
}

// entryWho is the caller as an AuditEvent names it.
type entryWho struct {
	Issuer    string   `json:"iss,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	ClientID  string   `json:"cid,omitempty"`
	Org       string   `json:"org,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	Roles     []string `json:"r,omitempty"`
	Anonymous bool     `json:"anon,omitempty"`
}

// NewEntry is the journal entry of r under id, recorded at r.Recorded.
func NewEntry(id string, r Record) Entry {
	outcome, desc := outcomeOf(r.Outcome)
	if outcome == "0" {
		outcome = ""
	}
	er := &entryRecord{Kind: r.Kind, Interaction: r.Interaction, Action: r.Action, Outcome: outcome, Desc: desc,
		Entities: r.Entities, Patient: r.Patient, Query: r.Query, RequestID: r.RequestID,
		Remote: r.Remote, Peer: r.Peer, Forwarded: r.Forwarded, Server: r.Server}
	if w := r.Who; w != nil {
		er.Who = &entryWho{Issuer: w.Issuer, Subject: w.Subject, ClientID: w.ClientID, Org: w.Org, JTI: w.JTI, Roles: w.Roles, Anonymous: w.Anonymous}
	}
	return Entry{ID: id, Recorded: r.Recorded, record: er}
}

// Event renders the entry's AuditEvent (without id, meta and chain
// extension) and its canonical content, which its chain hash covers.
func (e Entry) Event() (fhir.Object, []byte, error) {
	x, err := e.Render()
	if err != nil {
		return nil, nil, err
	}
	return x.Tree(), x.Canonical, nil
}

// Render renders the entry's AuditEvent: from its compact record, or, for a
// line of the earlier form, from the canonical JSON it holds.
func (e Entry) Render() (*Rendered, error) {
	if e.record == nil {
		ev, err := fhir.Parse(e.Canonical, fhir.Limits{})
		if err != nil {
			return nil, err
		}
		return &Rendered{tree: ev, Canonical: e.Canonical, parsed: true}, nil
	}
	er := e.record
	r := Record{Kind: er.Kind, Interaction: er.Interaction, Action: er.Action, Entities: er.Entities, Patient: er.Patient,
		Query: er.Query, RequestID: er.RequestID, Remote: er.Remote, Peer: er.Peer, Forwarded: er.Forwarded,
		Server: er.Server, Recorded: e.Recorded}
	if w := er.Who; w != nil {
		r.Who = &auth.Principal{Issuer: w.Issuer, Subject: w.Subject, ClientID: w.ClientID, Org: w.Org, JTI: w.JTI, Roles: w.Roles, Anonymous: w.Anonymous}
	}
	outcome := er.Outcome
	if outcome == "" {
		outcome = "0"
	}
	return render(r, outcome, er.Desc), nil
}

// entryLine is the JSON of an entry in its journal line: the compact record
// (r), or, in lines written before it was, the canonical content (c).
type entryLine struct {
	ID        string          `json:"id"`
	Recorded  time.Time       `json:"t"`
	Record    *entryRecord    `json:"r,omitempty"`
	Canonical json.RawMessage `json:"c,omitempty"`
}
