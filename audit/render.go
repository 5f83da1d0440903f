package audit

import (
	"encoding/base64"

	"crs/auth"
	"crs/fhir"
)

// Rendered is an AuditEvent rendered from its record: its canonical JSON
// (which its chain hash covers), its search values (Index), once its place in
// the chain is known its stored JSON (Body), and on demand the resource tree
// (Tree).
//
// The two JSON forms are written straight from the record by the writers
// below, in the order each needs (keys sorted for the canonical form, the
// FHIR definition's order for the stored one), instead of encoding the tree
// twice: that was about a third of the CPU of materialising an AuditEvent.
// TestRenderedIsTheEvent and FuzzRendered hold them byte for byte to
// Canonical and fhir.Marshal of the tree.
type Rendered struct {
	Canonical []byte

	tree fhir.Object // without id, meta and chain extension: built by Tree, or parsed from an old journal line

	r             Record
	outcome, desc string
	parsed        bool // tree came from an old journal line's canonical JSON: Body encodes the tree
}

// Render renders r as an AuditEvent.
func Render(r Record) *Rendered {
	outcome, desc := outcomeOf(r.Outcome)
	return render(r, outcome, desc)
}

func render(r Record, outcome, desc string) *Rendered {
	x := &Rendered{r: r, outcome: outcome, desc: desc}
	x.Canonical = x.appendCanonical(make([]byte, 0, 2048))
	return x
}

// Tree is the AuditEvent as a resource tree, without id, meta and chain
// extension. Storing the event needs only Canonical, Body and Index; the tree
// is built (a few dozen maps) only when asked for.
func (x *Rendered) Tree() fhir.Object {
	if x.tree == nil {
		x.tree = event(x.r, x.outcome, x.desc)
	}
	return x.tree
}

// Body is the AuditEvent's stored JSON under id and meta.lastUpdated, linked
// after previous ("" for the first event) with hash: what fhir.Marshal writes
// for Tree with id, meta and SetChain(previous, hash).
func (x *Rendered) Body(id, lastUpdated, previous, hash string) ([]byte, error) {
	if x.parsed {
		ev := make(fhir.Object, len(x.tree)+3)
		for k, v := range x.tree {
			ev[k] = v
		}
		ev["id"] = id
		ev["meta"] = map[string]any{"versionId": "1", "lastUpdated": lastUpdated}
		SetChain(ev, previous, hash)
		return fhir.Marshal(ev)
	}
	b := make([]byte, 0, len(x.Canonical)+512)
	b = append(b, `{"resourceType":"AuditEvent","id":`...)
	b = str(b, id)
	b = append(b, `,"meta":{"versionId":"1","lastUpdated":`...)
	b = str(b, lastUpdated)
	b = append(b, `},"extension":[{"extension":[`...)
	if previous != "" {
		b = append(b, `{"url":"previous","valueString":`...)
		b = str(b, previous)
		b = append(b, `},`...)
	}
	b = append(b, `{"url":"hash","valueString":`...)
	b = str(b, hash)
	b = append(b, `}],"url":`...)
	b = str(b, ChainExtension)
	b = append(b, `}]`...)

	r := x.r
	evType, subSystem, subCode, subDisplay, action := x.types()
	b = append(b, `,"type":`...)
	b = codingDef(b, evType[0], evType[1], evType[2])
	b = append(b, `,"subtype":[`...)
	b = codingDef(b, subSystem, subCode, subDisplay)
	b = append(b, `],"action":`...)
	b = str(b, action)
	b = append(b, `,"recorded":`...)
	b = str(b, recordedOf(r))
	b = append(b, `,"outcome":`...)
	b = str(b, x.outcome)
	if x.desc != "" {
		b = append(b, `,"outcomeDesc":`...)
		b = str(b, x.desc)
	}

	// agent: type, role, who, requestor, policy, network (the definition's order)
	b = append(b, `,"agent":[{"type":{"coding":[`...)
	b = codingDef(b, dcm, "110153", "Source Role ID")
	b = append(b, `]},"who":`...)
	b = x.clientWho(b)
	b = append(b, `,"requestor":false`...)
	if r.Remote != "" {
		b = append(b, `,"network":{`...)
		if x.hasPath() {
			b = append(b, `"extension":[{"extension":[`...)
			b = x.pathSubs(b)
			b = append(b, `],"url":`...)
			b = str(b, NetworkPathExtension)
			b = append(b, `}],`...)
		}
		b = append(b, `"address":`...)
		b = str(b, r.Remote)
		b = append(b, `,"type":"2"}`...)
	}
	b = append(b, `},{"type":{"coding":[`...)
	b = codingDef(b, dcm, "110152", "Destination Role ID")
	b = append(b, `]},"who":{"display":"crs"},"requestor":false,"network":{"address":`...)
	b = str(b, r.Server)
	b = append(b, `,"type":"5"}}`...)
	if w := r.Who; w != nil && !w.Anonymous {
		b = append(b, `,{"type":{"coding":[`...)
		b = codingDef(b, v3Participation, "IRCP", "information recipient")
		b = append(b, `]}`...)
		b = whoRoles(b, w, codingDef)
		b = append(b, `,"who":{"identifier":{"system":`...)
		b = str(b, w.Issuer)
		b = append(b, `,"value":`...)
		b = str(b, w.Subject)
		b = append(b, `}},"requestor":true`...)
		if w.JTI != "" {
			b = append(b, `,"policy":[`...)
			b = str(b, "urn:ietf:params:oauth:jti:"+w.JTI)
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"source":{"observer":{"display":`...)
	b = str(b, "crs "+r.Server)
	b = append(b, `},"type":[`...)
	b = codingDef(b, securitySource, "4", "Application Server")
	b = append(b, `]}`...)

	// entity: what, type, role, query
	if x.hasEntities() {
		b = append(b, `,"entity":[`...)
		first := true
		next := func() {
			if !first {
				b = append(b, ',')
			}
			first = false
		}
		if r.RequestID != "" {
			next()
			b = append(b, `{"what":{"identifier":{"value":`...)
			b = str(b, r.RequestID)
			b = append(b, `}},"type":`...)
			b = codingDef(b, balpTypes, "XrequestId", "")
			b = append(b, '}')
		}
		if r.Patient != "" {
			next()
			b = append(b, `{"what":{"reference":`...)
			b = str(b, r.Patient)
			b = append(b, `},"type":`...)
			b = codingDef(b, entType, "1", "Person")
			b = append(b, `,"role":`...)
			b = codingDef(b, objRole, "1", "Patient")
			b = append(b, '}')
		}
		for _, e := range r.Entities {
			if e == r.Patient {
				continue
			}
			next()
			b = append(b, `{"what":{"reference":`...)
			b = str(b, e)
			b = append(b, `},"type":`...)
			b = codingDef(b, entType, "2", "System Object")
			b = append(b, `,"role":`...)
			b = codingDef(b, objRole, "4", "Domain Resource")
			b = append(b, '}')
		}
		if r.Query != "" {
			next()
			b = append(b, `{"type":`...)
			b = codingDef(b, entType, "2", "System Object")
			b = append(b, `,"role":`...)
			b = codingDef(b, objRole, "24", "Query")
			b = append(b, `,"query":`...)
			b = str(b, base64.StdEncoding.EncodeToString([]byte(r.Query)))
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendCanonical writes what Canonical writes for the event: its JSON
// without id, meta and chain, every object's keys sorted.
func (x *Rendered) appendCanonical(b []byte) []byte {
	r := x.r
	evType, subSystem, subCode, subDisplay, action := x.types()
	b = append(b, `{"action":`...)
	b = str(b, action)

	b = append(b, `,"agent":[{`...)
	if r.Remote != "" {
		b = append(b, `"network":{"address":`...)
		b = str(b, r.Remote)
		if x.hasPath() {
			b = append(b, `,"extension":[{"extension":[`...)
			b = x.pathSubs(b)
			b = append(b, `],"url":`...)
			b = str(b, NetworkPathExtension)
			b = append(b, `}]`...)
		}
		b = append(b, `,"type":"2"},`...)
	}
	b = append(b, `"requestor":false,"type":{"coding":[`...)
	b = codingSorted(b, dcm, "110153", "Source Role ID")
	b = append(b, `]},"who":`...)
	b = x.clientWho(b)
	b = append(b, `},{"network":{"address":`...)
	b = str(b, r.Server)
	b = append(b, `,"type":"5"},"requestor":false,"type":{"coding":[`...)
	b = codingSorted(b, dcm, "110152", "Destination Role ID")
	b = append(b, `]},"who":{"display":"crs"}}`...)
	if w := r.Who; w != nil && !w.Anonymous {
		b = append(b, `,{`...)
		if w.JTI != "" {
			b = append(b, `"policy":[`...)
			b = str(b, "urn:ietf:params:oauth:jti:"+w.JTI)
			b = append(b, `],`...)
		}
		b = append(b, `"requestor":true`...)
		b = whoRoles(b, w, codingSorted)
		b = append(b, `,"type":{"coding":[`...)
		b = codingSorted(b, v3Participation, "IRCP", "information recipient")
		b = append(b, `]},"who":{"identifier":{"system":`...)
		b = str(b, w.Issuer)
		b = append(b, `,"value":`...)
		b = str(b, w.Subject)
		b = append(b, `}}}`...)
	}
	b = append(b, ']')

	if x.hasEntities() {
		b = append(b, `,"entity":[`...)
		first := true
		next := func() {
			if !first {
				b = append(b, ',')
			}
			first = false
		}
		if r.RequestID != "" {
			next()
			b = append(b, `{"type":`...)
			b = codingSorted(b, balpTypes, "XrequestId", "")
			b = append(b, `,"what":{"identifier":{"value":`...)
			b = str(b, r.RequestID)
			b = append(b, `}}}`...)
		}
		if r.Patient != "" {
			next()
			b = append(b, `{"role":`...)
			b = codingSorted(b, objRole, "1", "Patient")
			b = append(b, `,"type":`...)
			b = codingSorted(b, entType, "1", "Person")
			b = append(b, `,"what":{"reference":`...)
			b = str(b, r.Patient)
			b = append(b, `}}`...)
		}
		for _, e := range r.Entities {
			if e == r.Patient {
				continue
			}
			next()
			b = append(b, `{"role":`...)
			b = codingSorted(b, objRole, "4", "Domain Resource")
			b = append(b, `,"type":`...)
			b = codingSorted(b, entType, "2", "System Object")
			b = append(b, `,"what":{"reference":`...)
			b = str(b, e)
			b = append(b, `}}`...)
		}
		if r.Query != "" {
			next()
			b = append(b, `{"query":`...)
			b = str(b, base64.StdEncoding.EncodeToString([]byte(r.Query)))
			b = append(b, `,"role":`...)
			b = codingSorted(b, objRole, "24", "Query")
			b = append(b, `,"type":`...)
			b = codingSorted(b, entType, "2", "System Object")
			b = append(b, '}')
		}
		b = append(b, ']')
	}

	b = append(b, `,"outcome":`...)
	b = str(b, x.outcome)
	if x.desc != "" {
		b = append(b, `,"outcomeDesc":`...)
		b = str(b, x.desc)
	}
	b = append(b, `,"recorded":`...)
	b = str(b, recordedOf(r))
	b = append(b, `,"resourceType":"AuditEvent","source":{"observer":{"display":`...)
	b = str(b, "crs "+r.Server)
	b = append(b, `},"type":[`...)
	b = codingSorted(b, securitySource, "4", "Application Server")
	b = append(b, `]},"subtype":[`...)
	b = codingSorted(b, subSystem, subCode, subDisplay)
	b = append(b, `],"type":`...)
	b = codingSorted(b, evType[0], evType[1], evType[2])
	return append(b, '}')
}

// types is the event's type coding (system, code, display), its subtype
// coding and its action, as event writes them.
func (x *Rendered) types() (evType [3]string, subSystem, subCode, subDisplay, action string) {
	r := x.r
	switch r.Kind {
	case KindLogin:
		return [3]string{dcm, "110114", "User Authentication"}, dcm, "110122", "Login", "E"
	case KindLogout:
		return [3]string{dcm, "110114", "User Authentication"}, dcm, "110123", "Logout", "E"
	}
	return [3]string{restEventType, "rest", "Restful Operation"}, restfulInteraction, r.Interaction, "", r.Action
}

// clientWho writes the client agent's who (one key, or an identifier whose
// keys are in both orders).
func (x *Rendered) clientWho(b []byte) []byte {
	switch w := x.r.Who; {
	case w == nil:
		return append(b, `{"display":"unauthenticated caller"}`...)
	case w.Anonymous:
		return append(b, `{"display":"anonymous caller (development mode, no authentication)"}`...)
	default:
		b = append(b, `{"identifier":{"system":`...)
		b = str(b, w.Issuer)
		b = append(b, `,"value":`...)
		b = str(b, w.ClientID)
		return append(b, `}}`...)
	}
}

// hasPath reports whether the client's network carries the network path
// extension (networkOf).
func (x *Rendered) hasPath() bool {
	r := x.r
	return r.Peer != "" && r.Peer != r.Remote || r.Forwarded != ""
}

// pathSubs writes the network path extension's sub-extensions ({url,
// valueString} is both orders).
func (x *Rendered) pathSubs(b []byte) []byte {
	r := x.r
	comma := false
	if r.Peer != "" && r.Peer != r.Remote {
		b = append(b, `{"url":"peer","valueString":`...)
		b = str(b, r.Peer)
		b = append(b, '}')
		comma = true
	}
	if r.Forwarded != "" {
		if comma {
			b = append(b, ',')
		}
		b = append(b, `{"url":"forwarded","valueString":`...)
		b = str(b, r.Forwarded)
		b = append(b, '}')
	}
	return b
}

// hasEntities reports whether the event has an entity.
func (x *Rendered) hasEntities() bool {
	r := x.r
	if r.RequestID != "" || r.Patient != "" || r.Query != "" {
		return true
	}
	for _, e := range r.Entities {
		if e != r.Patient {
			return true
		}
	}
	return false
}

const (
	restEventType      = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	restfulInteraction = "http://hl7.org/fhir/restful-interaction"
	v3Participation    = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	odsOrganisation    = "https://fhir.nhs.uk/Id/ods-organization-code"
	securitySource     = "http://terminology.hl7.org/CodeSystem/security-source-type"
)

// recordedOf is the event's recorded instant.
func recordedOf(r Record) string {
	return r.Recorded.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func str(b []byte, s string) []byte { return fhir.AppendJSONString(b, s) }

// codingDef writes a Coding in the definition's order (system, code,
// display; no display when "").
// whoRoles appends the caller's roles and organisation as the agent's role
// array (",\"role\":[…]"), nothing when it has neither; coding writes the
// organisation's Coding in the order of the JSON being built (the stored
// body's definition order or the hashed canonical JSON's sorted order).
func whoRoles(b []byte, w *auth.Principal, coding func(b []byte, system, code, display string) []byte) []byte {
	if len(w.Roles) == 0 && w.Org == "" {
		return b
	}
	b = append(b, `,"role":[`...)
	for i, role := range w.Roles {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"text":`...)
		b = str(b, role)
		b = append(b, '}')
	}
	if w.Org != "" {
		if len(w.Roles) > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"coding":[`...)
		b = coding(b, odsOrganisation, w.Org, "")
		b = append(b, `],"text":`...)
		b = str(b, "organisation "+w.Org)
		b = append(b, '}')
	}
	return append(b, ']')
}

func codingDef(b []byte, system, code, display string) []byte {
	b = append(b, `{"system":`...)
	b = str(b, system)
	b = append(b, `,"code":`...)
	b = str(b, code)
	if display != "" {
		b = append(b, `,"display":`...)
		b = str(b, display)
	}
	return append(b, '}')
}

// codingSorted writes a Coding with its keys sorted (code, display, system).
func codingSorted(b []byte, system, code, display string) []byte {
	b = append(b, `{"code":`...)
	b = str(b, code)
	if display != "" {
		b = append(b, `,"display":`...)
		b = str(b, display)
	}
	b = append(b, `,"system":`...)
	b = str(b, system)
	return append(b, '}')
}
