// Package audit is crs's audit trail: what happened in one interaction (Record),
// rendered as an AuditEvent in the shape of IHE Basic Audit Log Patterns, the
// hash chain that links every AuditEvent to the one before it, and the check
// that the chain holds ("crs audit verify"). The engine records; this package
// says what a record is and how the chain is made and verified.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"crs/auth"
	"crs/fhir"
)

// Record is what happened in one interaction, for its AuditEvent.
type Record struct {
	Kind        string          // "" for a RESTful interaction; KindLogin or KindLogout for a browser sign-in or sign-out
	Interaction string          // restful-interaction code: read, vread, update, patch, delete, history-instance, history-type, history-system, create, search-type, capabilities, transaction, batch, operation
	Action      string          // C, R, U, D or E
	Outcome     *fhir.Error     // nil on success
	Entities    []string        // the resources involved, Type/id or Type/id/_history/n
	Patient     string          // Patient/id when a patient is involved
	Query       string          // the query of a search, as sent
	RequestID   string          // the X-Request-Id
	Remote      string          // the client's network address
	Peer        string          // the TCP peer's address (a proxy's when Remote came from X-Forwarded-For)
	Forwarded   string          // the forwarded chain as received (X-Forwarded-For or Forwarded)
	Server      string          // this server's base URL
	Who         *auth.Principal // nil: unknown caller (no or bad token)
	Recorded    time.Time
}

// Record kinds other than a RESTful interaction: a person signing in to or
// out of the pages (IHE BALP's user authentication events, DICOM 110114 with
// subtype 110122 Login or 110123 Logout).
const (
	KindLogin  = "login"
	KindLogout = "logout"
)

// NetworkPathExtension is the URL of the extension on the client agent's network
// saying how the request arrived: sub-extensions peer (the TCP peer's address)
// and forwarded (the X-Forwarded-For chain as received, believed or not).
const NetworkPathExtension = "https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-NetworkPath"

// networkOf is the client agent's network: the client's address, with the peer
// and the forwarded chain when a proxy was in the way.
func networkOf(r Record) map[string]any {
	n := map[string]any{"address": r.Remote, "type": "2"}
	var sub []any
	if r.Peer != "" && r.Peer != r.Remote {
		sub = append(sub, map[string]any{"url": "peer", "valueString": r.Peer})
	}
	if r.Forwarded != "" {
		sub = append(sub, map[string]any{"url": "forwarded", "valueString": r.Forwarded})
	}
	if sub != nil {
		n["extension"] = []any{map[string]any{"url": NetworkPathExtension, "extension": sub}}
	}
	return n
}

// ChainExtension is the URL of the extension holding an AuditEvent's place in
// the hash chain (sub-extensions previous and hash, hex SHA-256).
const ChainExtension = "https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-AuditChain"

const (
	dcm       = "http://dicom.nema.org/resources/ontology/DCM"
	entType   = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	objRole   = "http://terminology.hl7.org/CodeSystem/object-role"
	balpTypes = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
)

// Event renders a record as an AuditEvent in the shape of IHE Basic Audit Log Patterns
// (RESTful activity), without its chain extension.
func Event(r Record) fhir.Object {
	outcome, desc := outcomeOf(r.Outcome)
	return event(r, outcome, desc)
}

// outcomeOf is an AuditEvent's outcome code and description for an
// interaction's error (nil: success).
func outcomeOf(fe *fhir.Error) (outcome, desc string) {
	if fe == nil {
		return "0", ""
	}
	outcome = "4" // a failure the client caused
	if fe.Kind.Status() >= 500 {
		outcome = "8"
	}
	var msgs []string
	for _, is := range fe.Issues {
		msgs = append(msgs, is.Diagnostics)
	}
	desc = strings.Join(msgs, "; ")
	if desc == "" {
		desc = fe.Kind.String()
	}
	return outcome, desc
}

// event renders r with its outcome code and description (r.Outcome is not read).
func event(r Record, outcome, desc string) fhir.Object {
	ev := fhir.Object{
		"resourceType": "AuditEvent",
		"type":         map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "Restful Operation"},
		"subtype":      []any{map[string]any{"system": "http://hl7.org/fhir/restful-interaction", "code": r.Interaction}},
		"action":       r.Action,
		"recorded":     r.Recorded.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"outcome":      outcome,
		"source": map[string]any{
			"observer": map[string]any{"display": "crs " + r.Server},
			"type":     []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}},
		},
	}
	switch r.Kind {
	case KindLogin, KindLogout:
		ev["type"] = map[string]any{"system": dcm, "code": "110114", "display": "User Authentication"}
		code, display := "110122", "Login"
		if r.Kind == KindLogout {
			code, display = "110123", "Logout"
		}
		ev["subtype"] = []any{map[string]any{"system": dcm, "code": code, "display": display}}
		ev["action"] = "E"
	}
	if desc != "" {
		ev["outcomeDesc"] = desc
	}
	client := map[string]any{
		"type":      map[string]any{"coding": []any{map[string]any{"system": dcm, "code": "110153", "display": "Source Role ID"}}},
		"requestor": false,
	}
	if r.Remote != "" {
		client["network"] = networkOf(r)
	}
	server := map[string]any{
		"type":      map[string]any{"coding": []any{map[string]any{"system": dcm, "code": "110152", "display": "Destination Role ID"}}},
		"who":       map[string]any{"display": "crs"},
		"requestor": false,
		"network":   map[string]any{"address": r.Server, "type": "5"},
	}
	agents := []any{client, server}
	switch w := r.Who; {
	case w == nil:
		client["who"] = map[string]any{"display": "unauthenticated caller"}
	case w.Anonymous:
		client["who"] = map[string]any{"display": "anonymous caller (development mode, no authentication)"}
	default:
		client["who"] = map[string]any{"identifier": map[string]any{"system": w.Issuer, "value": w.ClientID}}
		user := map[string]any{
			"type":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}}},
			"who":       map[string]any{"identifier": map[string]any{"system": w.Issuer, "value": w.Subject}},
			"requestor": true,
		}
		if w.JTI != "" {
			user["policy"] = []any{"urn:ietf:params:oauth:jti:" + w.JTI}
		}
		var roles []any
		for _, role := range w.Roles {
			roles = append(roles, map[string]any{"text": role})
		}
		if w.Org != "" {
			roles = append(roles, map[string]any{"coding": []any{map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "code": w.Org}}, "text": "organisation " + w.Org})
		}
		if roles != nil {
			user["role"] = roles
		}
		agents = append(agents, user)
	}
	ev["agent"] = agents
	entities := []any{}
	if r.RequestID != "" {
		entities = append(entities, map[string]any{
			"what": map[string]any{"identifier": map[string]any{"value": r.RequestID}},
			"type": map[string]any{"system": balpTypes, "code": "XrequestId"},
		})
	}
	if r.Patient != "" {
		entities = append(entities, map[string]any{
			"what": map[string]any{"reference": r.Patient},
			"type": map[string]any{"system": entType, "code": "1", "display": "Person"},
			"role": map[string]any{"system": objRole, "code": "1", "display": "Patient"},
		})
	}
	for _, e := range r.Entities {
		if e == r.Patient {
			continue
		}
		entities = append(entities, map[string]any{
			"what": map[string]any{"reference": e},
			"type": map[string]any{"system": entType, "code": "2", "display": "System Object"},
			"role": map[string]any{"system": objRole, "code": "4", "display": "Domain Resource"},
		})
	}
	if r.Query != "" {
		entities = append(entities, map[string]any{
			"type":  map[string]any{"system": entType, "code": "2", "display": "System Object"},
			"role":  map[string]any{"system": objRole, "code": "24", "display": "Query"},
			"query": base64.StdEncoding.EncodeToString([]byte(r.Query)),
		})
	}
	if len(entities) > 0 {
		ev["entity"] = entities
	}
	return ev
}

// ChainHash is the hash of an AuditEvent linked to the previous one: SHA-256 of
// the previous hash and the event's canonical JSON without id, meta and its
// chain extension.
func ChainHash(previous string, ev fhir.Object) (string, error) {
	canonical, err := Canonical(ev)
	if err != nil {
		return "", err
	}
	return HashAfter(previous, canonical), nil
}

// Canonical is the part of an AuditEvent its hash covers: its JSON (keys
// sorted) without id, meta and the chain extension.
func Canonical(ev fhir.Object) ([]byte, error) {
	cp := make(fhir.Object, len(ev))
	for k, v := range ev {
		switch k {
		case "id", "meta":
		case "extension":
			if keep := extensionsWithout(ev, ChainExtension); keep != nil {
				cp[k] = keep
			}
		default:
			cp[k] = v
		}
	}
	return fhir.MarshalSorted(cp)
}

// HashAfter links canonical content to the previous hash.
func HashAfter(previous string, canonical []byte) string {
	h := sha256.New()
	h.Write([]byte(previous))
	h.Write([]byte{0})
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil))
}

// LastHash reads the hash out of a stored AuditEvent body without decoding it
// all (the writer does this for every event).
func LastHash(body []byte) string {
	const marker = `{"url":"hash","valueString":"`
	i := bytes.LastIndex(body, []byte(marker))
	if i < 0 {
		return ""
	}
	rest := body[i+len(marker):]
	if j := bytes.IndexByte(rest, '"'); j == 64 {
		return string(rest[:j])
	}
	return ""
}

// Chain reads an AuditEvent's chain extension.
func Chain(ev fhir.Object) (previous, hash string, ok bool) {
	list, _ := ev["extension"].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		if m["url"] != ChainExtension {
			continue
		}
		subs, _ := m["extension"].([]any)
		for _, s := range subs {
			sm, _ := s.(map[string]any)
			v, _ := sm["valueString"].(string)
			switch sm["url"] {
			case "previous":
				previous = v
			case "hash":
				hash = v
			}
		}
		return previous, hash, hash != ""
	}
	return "", "", false
}

// Link sets an AuditEvent's chain extension after previous, and returns its hash.
func Link(ev fhir.Object, previous string) (string, error) {
	hash, err := ChainHash(previous, ev)
	if err != nil {
		return "", err
	}
	SetChain(ev, previous, hash)
	return hash, nil
}

// SetChain sets an AuditEvent's chain extension.
func SetChain(ev fhir.Object, previous, hash string) {
	subs := []any{map[string]any{"url": "hash", "valueString": hash}}
	if previous != "" {
		subs = append([]any{map[string]any{"url": "previous", "valueString": previous}}, subs...)
	}
	ev["extension"] = append(extensionsWithout(ev, ChainExtension), map[string]any{"url": ChainExtension, "extension": subs})
}

func extensionsWithout(ev fhir.Object, url string) []any {
	var out []any
	list, _ := ev["extension"].([]any)
	for _, x := range list {
		if m, _ := x.(map[string]any); m["url"] != url {
			out = append(out, x)
		}
	}
	return out
}

// ChainBreak is where the audit chain does not hold.
type ChainBreak struct {
	Position int    // 1 for the oldest event
	ID       string // the AuditEvent's id
	Reason   string
}

// Error says where and why the chain breaks.
func (b *ChainBreak) Error() string {
	return "audit chain broken at event " + strconv.Itoa(b.Position) + " (AuditEvent/" + b.ID + "): " + b.Reason
}

// VerifyChain checks AuditEvent bodies given oldest first: each hash matches
// its content and its predecessor's hash. It returns the number of events
// checked and the first break.
func VerifyChain(next func() (id string, body []byte, ok bool, err error)) (int, error) {
	prev, n := "", 0
	for {
		id, body, ok, err := next()
		if err != nil {
			return n, err
		}
		if !ok {
			return n, nil
		}
		n++
		ev, err := fhir.Parse(body, fhir.Limits{})
		if err != nil {
			return n, &ChainBreak{n, id, fmt.Sprintf("the stored body is not JSON: %v", err)}
		}
		p, h, ok := Chain(ev)
		if !ok {
			return n, &ChainBreak{n, id, "it has no chain extension"}
		}
		if p != prev {
			return n, &ChainBreak{n, id, "it does not follow the previous event (an event was removed or reordered)"}
		}
		want, err := ChainHash(p, ev)
		if err != nil {
			return n, err
		}
		if want != h {
			return n, &ChainBreak{n, id, "its content does not match its hash (it was changed after it was written)"}
		}
		prev = h
	}
}
