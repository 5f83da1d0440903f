package audit

import (
	"crs/fhir"
	"crs/fhir/fhirpath"
	"crs/fhir/search"
)

// IndexedParams are the AuditEvent search parameters (code, type and
// FHIRPath expression) whose values Rendered.Index computes straight from
// the record. A registry whose AuditEvent parameters are not exactly these
// (a parameter added or changed) must be asked instead: see IndexFits.
// TestIndexIsExtraction holds Index to what fhir/search extraction gives for
// the rendered AuditEvent, so a change of the definitions or of the renderer
// fails it.
var IndexedParams = []fhir.SearchParam{
	{Code: "_id", Type: fhir.TypeToken, Expression: "AuditEvent.id"},
	{Code: "_lastUpdated", Type: fhir.TypeDate, Expression: "AuditEvent.meta.lastUpdated"},
	{Code: "_profile", Type: fhir.TypeURI, Expression: "AuditEvent.meta.profile"},
	{Code: "_security", Type: fhir.TypeToken, Expression: "AuditEvent.meta.security"},
	{Code: "_source", Type: fhir.TypeURI, Expression: "AuditEvent.meta.source"},
	{Code: "_tag", Type: fhir.TypeToken, Expression: "AuditEvent.meta.tag"},
	{Code: "action", Type: fhir.TypeToken, Expression: "AuditEvent.action"},
	{Code: "address", Type: fhir.TypeString, Expression: "AuditEvent.agent.network.address"},
	{Code: "agent", Type: fhir.TypeReference, Expression: "AuditEvent.agent.who"},
	{Code: "agent-name", Type: fhir.TypeString, Expression: "AuditEvent.agent.name"},
	{Code: "agent-role", Type: fhir.TypeToken, Expression: "AuditEvent.agent.role"},
	{Code: "altid", Type: fhir.TypeToken, Expression: "AuditEvent.agent.altId"},
	{Code: "date", Type: fhir.TypeDate, Expression: "AuditEvent.recorded"},
	{Code: "entity", Type: fhir.TypeReference, Expression: "AuditEvent.entity.what"},
	{Code: "entity-name", Type: fhir.TypeString, Expression: "AuditEvent.entity.name"},
	{Code: "entity-role", Type: fhir.TypeToken, Expression: "AuditEvent.entity.role"},
	{Code: "entity-type", Type: fhir.TypeToken, Expression: "AuditEvent.entity.type"},
	{Code: "outcome", Type: fhir.TypeToken, Expression: "AuditEvent.outcome"},
	{Code: "patient", Type: fhir.TypeReference, Expression: "AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)"},
	{Code: "policy", Type: fhir.TypeURI, Expression: "AuditEvent.agent.policy"},
	{Code: "site", Type: fhir.TypeToken, Expression: "AuditEvent.source.site"},
	{Code: "source", Type: fhir.TypeReference, Expression: "AuditEvent.source.observer"},
	{Code: "subtype", Type: fhir.TypeToken, Expression: "AuditEvent.subtype"},
	{Code: "type", Type: fhir.TypeToken, Expression: "AuditEvent.type"},
}

// IndexFits reports whether params (a registry's supported AuditEvent
// parameters, sorted by code) are exactly IndexedParams, so that
// Rendered.Index gives what extraction would.
func IndexFits(params []*fhir.SearchParam) bool {
	if len(params) != len(IndexedParams) {
		return false
	}
	for i, p := range params {
		w := &IndexedParams[i]
		if p.Code != w.Code || p.Type != w.Type || p.Expression != w.Expression {
			return false
		}
	}
	return true
}

// The normalised text of the displays the renderer writes, as token values
// carry them.
var (
	textRestful   = search.Normalize("Restful Operation")
	textUserAuth  = search.Normalize("User Authentication")
	textLogin     = search.Normalize("Login")
	textLogout    = search.Normalize("Logout")
	textPatient   = search.Normalize("Patient")
	textDomain    = search.Normalize("Domain Resource")
	textQuery     = search.Normalize("Query")
	textPerson    = search.Normalize("Person")
	textSysObject = search.Normalize("System Object")
)

// Index is the search values of the AuditEvent stored under id with
// meta.lastUpdated lastUpdated, parameter by parameter in code order: what
// fhir/search extraction of IndexedParams gives for the event, computed from
// the record instead of evaluating FHIRPath over the rendered tree (which
// was about a sixth of the CPU of materialising an event). It leaves out
// _lastUpdated, whose values are the date values. ok is false
// for an event of an old journal line (parsed from its JSON), or when
// lastUpdated is not the event's recorded instant: extract its values from
// Tree instead.
func (x *Rendered) Index(id, lastUpdated string) (vals []fhir.IndexValue, ok bool) {
	if x.parsed {
		return nil, false
	}
	r := x.r
	vals = make([]fhir.IndexValue, 0, 24+2*len(r.Entities))
	tok := func(code, system, c, text string) {
		vals = append(vals, fhir.IndexValue{Param: code, Type: fhir.TypeToken, System: system, Code: c, Text: text})
	}
	// unique appends v unless the parameter's values from start on hold it.
	unique := func(start int, v fhir.IndexValue) {
		for _, w := range vals[start:] {
			if w == v {
				return
			}
		}
		vals = append(vals, v)
	}
	date := func(code, s string) {
		if lo, hi, ok := search.DateRange(s); ok {
			vals = append(vals, fhir.IndexValue{Param: code, Type: fhir.TypeDate, Low: lo, High: hi})
		}
	}
	// ref is a reference's search value (referenceValues): nothing for "" or
	// a contained reference.
	ref := func(code, s string) (fhir.IndexValue, bool) {
		iv := fhir.IndexValue{Param: code, Type: fhir.TypeReference}
		if s == "" || s[0] == '#' {
			return iv, false
		}
		if rf, ok := fhir.ParseReference(s, ""); ok {
			iv.RefType, iv.RefID = rf.Type, rf.ID
		} else {
			iv.Exact = s
		}
		return iv, true
	}
	// whats are the references of the entities, in the event's order.
	whats := make([]string, 0, 1+len(r.Entities))
	if r.Patient != "" {
		whats = append(whats, r.Patient)
	}
	for _, e := range r.Entities {
		if e != r.Patient {
			whats = append(whats, e)
		}
	}
	w := r.Who
	user := w != nil && !w.Anonymous

	if id != "" {
		tok("_id", "", id, "")
	}
	// No _lastUpdated values: an AuditEvent's meta.lastUpdated is its
	// recorded instant, so its date values below are the same, and the
	// engine reads _lastUpdated of AuditEvents from them (fhir/engine,
	// auditalias.go). lastUpdated is checked to be that instant.
	if lastUpdated != recordedOf(r) {
		return nil, false
	}

	evType, subSystem, subCode, _, action := x.types()
	if action != "" {
		tok("action", "", action, "")
	}

	start := len(vals)
	for _, a := range []string{r.Remote, r.Server} {
		if a != "" {
			unique(start, fhir.IndexValue{Param: "address", Type: fhir.TypeString, Str: search.Normalize(a), Exact: a})
		}
	}

	if user {
		start = len(vals)
		for _, c := range []string{w.ClientID, w.Subject} {
			if w.Issuer != "" || c != "" {
				unique(start, fhir.IndexValue{Param: "agent", Type: fhir.TypeReference, System: w.Issuer, Code: c})
			}
		}
		start = len(vals)
		for _, role := range w.Roles {
			if t := search.Normalize(role); t != "" {
				unique(start, fhir.IndexValue{Param: "agent-role", Type: fhir.TypeToken, Text: t})
			}
		}
		if w.Org != "" {
			unique(start, fhir.IndexValue{Param: "agent-role", Type: fhir.TypeToken, System: odsOrganisation, Code: w.Org, Text: search.Normalize("organisation " + w.Org)})
		}
	}

	date("date", recordedOf(r))

	start = len(vals)
	if r.RequestID != "" {
		vals = append(vals, fhir.IndexValue{Param: "entity", Type: fhir.TypeReference, Code: r.RequestID})
	}
	for _, s := range whats {
		if iv, ok := ref("entity", s); ok {
			unique(start, iv)
		}
	}

	if r.Patient != "" {
		tok("entity-role", objRole, "1", textPatient)
	}
	if len(whats) > 0 && (r.Patient == "" || len(whats) > 1) {
		tok("entity-role", objRole, "4", textDomain)
	}
	if r.Query != "" {
		tok("entity-role", objRole, "24", textQuery)
	}

	if r.RequestID != "" {
		tok("entity-type", balpTypes, "XrequestId", "")
	}
	if r.Patient != "" {
		tok("entity-type", entType, "1", textPerson)
	}
	if len(whats) > 0 && (r.Patient == "" || len(whats) > 1) || r.Query != "" {
		tok("entity-type", entType, "2", textSysObject)
	}

	if x.outcome != "" {
		tok("outcome", "", x.outcome, "")
	}

	start = len(vals)
	for _, s := range whats {
		if fhirpath.ReferenceType(s) != "Patient" {
			continue
		}
		if iv, ok := ref("patient", s); ok {
			unique(start, iv)
		}
	}

	if user && w.JTI != "" {
		vals = append(vals, fhir.IndexValue{Param: "policy", Type: fhir.TypeURI, Exact: "urn:ietf:params:oauth:jti:" + w.JTI})
	}

	subText, typeText := "", textRestful
	switch r.Kind {
	case KindLogin:
		subText, typeText = textLogin, textUserAuth
	case KindLogout:
		subText, typeText = textLogout, textUserAuth
	}
	tok("subtype", subSystem, subCode, subText)
	tok("type", evType[0], evType[1], typeText)
	return vals, true
}
