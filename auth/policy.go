package auth

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"crs/fhir"
	"crs/fhir/search"
)

//go:embed policy.json
var defaultPolicy []byte

// PolicyFile is the access policy as data: per role, grants of SMART permissions
// on resource types, each optionally bounded by a search condition in which
// {org} (the caller's ODS code) and {la} (its local authority) are replaced by
// the token's claims. Anything not granted is denied.
//
// PatientContext bounds SMART patient/ scopes: per resource type, the search
// condition ({patient} replaced by the token's patient id) that keeps a
// patient-scoped token to that person's records. A type without one is not
// granted by patient/ scopes at all.
type PolicyFile struct {
	Roles map[string]struct {
		Description string  `json:"description"`
		Grants      []Grant `json:"grants"`
	} `json:"roles"`
	PatientContext map[string]string `json:"patientContext"`
}

// Grant gives permissions on types, within the records where selects.
type Grant struct {
	Types       []string `json:"types"`       // resource types, or "*"
	Permissions string   `json:"permissions"` // letters of cruds
	Where       string   `json:"where"`       // a search query string; empty: every record
}

// Policy is the compiled access policy. It implements the engine's access
// check: Conditions gives the search parameters that bound a caller's
// interaction, which the engine adds to its queries.
type Policy struct {
	params *search.Registry
	// rules: role → type → permission → where ("" unrestricted)
	rules map[string]map[string]map[Permission]string
	// patient: type → condition bounding patient/ scopes
	patient map[string]string
	cache   sync.Map // role|type|perm|org|la → []fhir.Param
}

// LoadPolicy compiles the policy in path, or the embedded default when path is
// empty. Every condition is parsed once at load, so a policy that names an
// unknown parameter fails to load.
func LoadPolicy(path string, params *search.Registry) (*Policy, error) {
	data := defaultPolicy
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, err
		}
	}
	var f PolicyFile
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("access policy: %w", err)
	}
	p := &Policy{params: params, rules: map[string]map[string]map[Permission]string{}, patient: map[string]string{}}
	for t, where := range f.PatientContext {
		if !fhir.Served(t) {
			return nil, fmt.Errorf("access policy: patientContext: %q is not a served type", t)
		}
		if !strings.Contains(where, "{patient}") {
			return nil, fmt.Errorf("access policy: patientContext of %s does not use {patient}", t)
		}
		if _, err := p.compile(t, where, "ODS", "LA", "example"); err != nil {
			return nil, fmt.Errorf("access policy: patientContext of %s: %v", t, err)
		}
		p.patient[t] = where
	}
	for role, r := range f.Roles {
		byType := map[string]map[Permission]string{}
		for gi, g := range r.Grants {
			if !validPermissions(g.Permissions) {
				return nil, fmt.Errorf("access policy: role %s grant %d: permissions %q are not letters of cruds in order", role, gi, g.Permissions)
			}
			for _, t := range g.Types {
				if t != "*" && !fhir.Served(t) {
					return nil, fmt.Errorf("access policy: role %s grant %d: %q is not a served type", role, gi, t)
				}
				if g.Where != "" {
					if t == "*" {
						return nil, fmt.Errorf("access policy: role %s grant %d: a condition needs named types", role, gi)
					}
					if _, err := p.compile(t, g.Where, "ODS", "LA", ""); err != nil {
						return nil, fmt.Errorf("access policy: role %s grant %d on %s: %v", role, gi, t, err)
					}
				}
				if byType[t] == nil {
					byType[t] = map[Permission]string{}
				}
				for _, c := range g.Permissions {
					perm := Permission(c)
					if old, dup := byType[t][perm]; dup && old != g.Where {
						return nil, fmt.Errorf("access policy: role %s grants %c on %s twice with different conditions", role, c, t)
					}
					byType[t][perm] = g.Where
				}
			}
		}
		p.rules[role] = byType
	}
	return p, nil
}

// Roles lists the policy's roles.
func (p *Policy) Roles() []string {
	var out []string
	for r := range p.rules {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// escapeValue escapes a claim value for a search value.
func escapeValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`).Replace(s)
}

// compile parses a condition with the claim values substituted.
func (p *Policy) compile(rt, where, org, la, patient string) ([]fhir.Param, error) {
	q := strings.NewReplacer("{org}", escapeValue(org), "{la}", escapeValue(la), "{patient}", escapeValue(patient)).Replace(where)
	var raw []fhir.RawParam
	for _, part := range strings.Split(q, "&") {
		name, value, _ := strings.Cut(part, "=")
		raw = append(raw, fhir.RawParam{Name: name, Value: value})
	}
	parsed, err := p.params.ParseQuery(rt, raw, search.ParseOptions{})
	if err != nil {
		return nil, err
	}
	return parsed.Params, nil
}

// Conditions says whether the caller in ctx may use permission perm on type rt:
// an error (401 without a caller, 403 when neither scopes nor policy grant it),
// or the search conditions that bound which records (nil: any record).
func (p *Policy) Conditions(ctx context.Context, rt string, perm Permission) ([]fhir.Param, error) {
	who := PrincipalFrom(ctx)
	if who == nil {
		return nil, LoginError("this request needs a bearer token")
	}
	if who.Anonymous {
		return nil, nil
	}
	granted, patientOnly := Grants(who.Scopes, rt, perm, fhir.ValidID(who.Patient))
	if !granted {
		if !fhir.ValidID(who.Patient) && patientScoped(who.Scopes) {
			return nil, fhir.Errorf(fhir.Forbidden, "", "the token's scopes do not grant %q on %s (its patient/ scopes need a patient id in the token, which it lacks)", string(perm), rt)
		}
		return nil, fhir.Errorf(fhir.Forbidden, "", "the token's scopes do not grant %q on %s", string(perm), rt)
	}
	conds, err := p.roleConditions(who, rt, perm)
	if err != nil || !patientOnly {
		return conds, err
	}
	// Granted by patient/ scopes only: the records must also be the patient's.
	where, ok := p.patient[rt]
	if !ok {
		return nil, fhir.Errorf(fhir.Forbidden, "", "patient/ scopes grant nothing on %s, which is not kept to one person's records", rt)
	}
	pc, err := p.compile(rt, where, "", "", who.Patient)
	if err != nil {
		return nil, fhir.Errorf(fhir.Forbidden, "", "the access policy cannot be applied to this caller: %v", err)
	}
	return append(append([]fhir.Param{}, conds...), pc...), nil
}

// roleConditions gives the conditions the caller's roles put on perm on rt.
func (p *Policy) roleConditions(who *Principal, rt string, perm Permission) ([]fhir.Param, error) {
	for _, role := range who.Roles {
		byType, ok := p.rules[role]
		if !ok {
			continue
		}
		where, ok := byType[rt][perm]
		if !ok {
			where, ok = byType["*"][perm]
		}
		if !ok {
			continue
		}
		if where == "" {
			return nil, nil
		}
		if strings.Contains(where, "{org}") && who.Org == "" {
			return nil, fhir.Errorf(fhir.Forbidden, "", "the %s role needs an organisation claim, which the token lacks", role)
		}
		if strings.Contains(where, "{la}") && who.LocalAuthority == "" {
			return nil, fhir.Errorf(fhir.Forbidden, "", "the %s role needs a local authority claim, which the token lacks", role)
		}
		key := role + "|" + rt + "|" + string(perm) + "|" + who.Org + "|" + who.LocalAuthority
		if c, ok := p.cache.Load(key); ok {
			return c.([]fhir.Param), nil
		}
		conds, err := p.compile(rt, where, who.Org, who.LocalAuthority, "")
		if err != nil {
			return nil, fhir.Errorf(fhir.Forbidden, "", "the access policy cannot be applied to this caller: %v", err)
		}
		p.cache.Store(key, conds)
		return conds, nil
	}
	return nil, fhir.Errorf(fhir.Forbidden, "", "no role of this caller (%s) may use %q on %s", strings.Join(who.Roles, ", "), string(perm), rt)
}
