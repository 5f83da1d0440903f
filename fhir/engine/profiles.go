package engine

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/store"
	"crs/profiles"
)

// Profiles checks resources against the pathway's profiles and serves its
// value sets (implemented by *profiles.Set).
type Profiles interface {
	Check(res fhir.Object, opt profiles.Options) profiles.Result
	Expand(url, filter string, offset, count int, now time.Time) (fhir.Object, error)
	Translate(req profiles.TranslateRequest) (fhir.Object, error)
	PathwayProfiles() []*profiles.Profile
	Resources() []fhir.Object
}

// Enforcement says which writes are checked against the pathway profiles.
type Enforcement string

// The enforcement modes of --profile-enforcement.
const (
	// EnforceStrict checks every write of a type the pathway profiles, whether or
	// not it claims the profile, adds the profile to meta.profile, and requires
	// local references to resolve.
	EnforceStrict Enforcement = "strict"
	// EnforceDeclared checks only the profiles a resource claims in meta.profile.
	EnforceDeclared Enforcement = "declared"
)

// checked is what validation learnt about a resource to be written.
type checked struct {
	issues  []fhir.Issue        // warnings and information, reported with the write
	allowed map[string][]string // reference element → types the profiles allow
	resolve bool                // local references must resolve (strict, profiled)
	order   *fhir.Order         // the key order the client sent; nil: definition order
}

// check validates a parsed resource that is to be stored as type rt by an
// interaction of the given mode ("create" or "update"): base R4 first (400 on
// error), then the pathway profiles (422 on error).
func (e *Engine) check(rt string, obj fhir.Object, mode string) (checked, error) {
	got := fhir.ResourceType(obj)
	if !e.validator.Known(got) {
		return checked{}, fhir.Errorf(fhir.Invalid, "resourceType", "unknown resourceType %q", got)
	}
	if got != rt {
		return checked{}, fhir.Errorf(fhir.Invalid, "resourceType", "resourceType %q does not match the type %q in the URL", got, rt)
	}
	var c checked
	base := e.validator.Validate(obj)
	if err := fhir.IssuesError(fhir.Invalid, base); err != nil {
		return checked{}, err
	}
	c.issues = append(c.issues, base...)
	if e.profiles == nil {
		return c, nil
	}
	res := e.profiles.Check(obj, profiles.Options{Mode: mode, Strict: e.enforcement == EnforceStrict})
	if err := fhir.IssuesError(fhir.Unprocessable, res.Issues); err != nil {
		return checked{}, err
	}
	c.issues = append(c.issues, res.Issues...)
	c.allowed = res.Allowed
	c.resolve = e.enforcement == EnforceStrict && len(res.Profiles) > 0
	return c, nil
}

// reader is what reference resolution reads through: the store, or a write
// transaction (which also sees the transaction's own writes).
type reader interface {
	Read(ctx context.Context, typ, id string) (store.Version, error)
}

// resolveReferences checks that every local reference of a profiled resource
// resolves, to a type its profile allows. References to other servers are not
// followed; contained ("#x") ones are the base validator's business.
func (e *Engine) resolveReferences(ctx context.Context, r reader, obj fhir.Object, allowed map[string][]string) error {
	return e.resolveRefs(ctx, r, profiles.References(obj, allowed))
}

// resolveRefs is resolveReferences for references already found.
func (e *Engine) resolveRefs(ctx context.Context, r reader, refs []profiles.Reference) error {
	var issues []fhir.Issue
	for _, ref := range refs {
		v := ref.Value
		if strings.HasPrefix(v, "#") {
			continue
		}
		if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") {
			rest, local := strings.CutPrefix(v, e.base+"/")
			if !local {
				continue
			}
			v = rest
		}
		typ, id, ok := profiles.ReferenceTarget(v)
		switch {
		case !ok:
			issues = append(issues, refIssue(ref, "reference %q cannot be resolved on this server", ref.Value))
			continue
		case len(ref.Allowed) > 0 && !contains(ref.Allowed, typ):
			issues = append(issues, refIssue(ref, "a reference to %s is not allowed here: it must be to %s", typ, strings.Join(ref.Allowed, " or ")))
			continue
		case !fhir.Served(typ):
			issues = append(issues, refIssue(ref, "reference %q is to a %s, which this server does not hold", ref.Value, typ))
			continue
		}
		cur, err := r.Read(ctx, typ, id)
		switch {
		case fhir.KindOf(err) == fhir.NotFound || fhir.KindOf(err) == fhir.Gone || (err == nil && cur.Deleted):
			issues = append(issues, refIssue(ref, "reference %q does not resolve: there is no %s/%s", ref.Value, typ, id))
		case err != nil:
			return err
		}
	}
	if err := fhir.IssuesError(fhir.Unprocessable, issues); err != nil {
		return err
	}
	return nil
}

func refIssue(ref profiles.Reference, format string, args ...any) fhir.Issue {
	e := fhir.Errorf(fhir.Unprocessable, ref.Expression+".reference", format, args...)
	return e.Issues[0]
}

// ValidateRequest is a $validate call.
type ValidateRequest struct {
	Type, ID string // ID for instance-level $validate
	Body     []byte // the resource, or a Parameters resource
	Mode     string // create, update or delete (from the query or the Parameters)
	Profile  string // check against this profile only
}

// Validate runs $validate: the checks of a write, without storing. It returns
// an OperationOutcome with every issue found (an information issue when none).
func (e *Engine) Validate(ctx context.Context, req ValidateRequest) (oo fhir.Object, err error) {
	ctx, ia := e.begin(ctx, "operation", "E", req.Type, req.ID)
	defer func() { oo, err = endObject(oo, e.end(ctx, ia, err)) }()
	if !fhir.Served(req.Type) {
		return nil, fhir.Errorf(fhir.NotSupportedType, "", "resource type %q is not supported", req.Type)
	}
	// $validate is for callers who may write the type.
	if _, err := e.conditions(ctx, req.Type, fhir.PermCreate); err != nil {
		if _, err2 := e.conditions(ctx, req.Type, fhir.PermUpdate); err2 != nil {
			return nil, err
		}
	}
	var obj fhir.Object
	if len(req.Body) > 0 {
		body, err := fhir.Parse(req.Body, e.limits)
		if err != nil {
			return nil, fhir.WithOp("validate", err)
		}
		obj = body
		if fhir.ResourceType(body) == "Parameters" {
			obj = nil
			params, _ := body["parameter"].([]any)
			for _, p := range params {
				pm, _ := p.(map[string]any)
				switch pm["name"] {
				case "resource":
					obj, _ = pm["resource"].(map[string]any)
				case "mode":
					req.Mode, _ = pm["valueCode"].(string)
				case "profile":
					req.Profile, _ = pm["valueUri"].(string)
					if req.Profile == "" {
						req.Profile, _ = pm["valueCanonical"].(string)
					}
				}
			}
		}
	}
	switch req.Mode {
	case "", "create", "update", "delete":
	default:
		return nil, fhir.Errorf(fhir.Invalid, "mode", "mode must be create, update or delete, not %q", req.Mode)
	}
	if req.Mode == "delete" {
		if req.ID == "" {
			return nil, fhir.Errorf(fhir.Invalid, "mode", "mode=delete needs an instance: POST /%s/{id}/$validate", req.Type)
		}
		if _, err := e.store.Read(ctx, req.Type, req.ID); err != nil {
			return nil, err
		}
		return fhir.Outcome([]fhir.Issue{{Severity: fhir.SeverityInformation, Code: "informational",
			Diagnostics: req.Type + "/" + req.ID + " may be deleted: no rule of this server prevents it"}}), nil
	}
	if obj == nil {
		return nil, fhir.Errorf(fhir.Invalid, "resource", "$validate needs a resource: the request body, or a Parameters resource with a resource parameter")
	}
	if req.Mode == "" {
		req.Mode = "create"
		if req.ID != "" {
			req.Mode = "update"
		}
	}
	if req.ID != "" && fhir.ID(obj) != req.ID {
		return fhir.Outcome([]fhir.Issue{{Severity: fhir.SeverityError, Code: "invalid", Expression: req.Type + ".id",
			Diagnostics: "the id " + strconv.Quote(fhir.ID(obj)) + " does not match the id " + strconv.Quote(req.ID) + " of the URL"}}), nil
	}
	issues := e.validateOnly(ctx, req, obj)
	if len(issues) == 0 {
		issues = []fhir.Issue{{Severity: fhir.SeverityInformation, Code: "informational", Diagnostics: "no issues found"}}
	}
	return fhir.Outcome(issues), nil
}

// validateOnly collects the issues of every layer, the way a write would meet
// them, but reports them instead of stopping at the first failing layer.
func (e *Engine) validateOnly(ctx context.Context, req ValidateRequest, obj fhir.Object) []fhir.Issue {
	rt := fhir.ResourceType(obj)
	if !e.validator.Known(rt) || rt != req.Type {
		return []fhir.Issue{{Severity: fhir.SeverityError, Code: "invalid", Expression: "resourceType",
			Diagnostics: "resourceType " + strconv.Quote(rt) + " does not match the type " + strconv.Quote(req.Type) + " of the URL"}}
	}
	issues := e.validator.Validate(obj)
	if fhir.IssuesError(fhir.Invalid, issues) != nil || e.profiles == nil {
		return issues
	}
	res := e.profiles.Check(obj, profiles.Options{Mode: req.Mode, Strict: e.enforcement == EnforceStrict, Profile: req.Profile})
	issues = append(issues, res.Issues...)
	if e.enforcement == EnforceStrict && len(res.Profiles) > 0 {
		if err := e.resolveReferences(ctx, e.store, obj, res.Allowed); err != nil {
			issues = append(issues, fhir.AsError(err).Issues...)
		}
	}
	return issues
}

// Expand runs ValueSet $expand on a value set of the pathway, named by url or
// by the id of a stored ValueSet.
func (e *Engine) Expand(ctx context.Context, id string, query url.Values) (vs fhir.Object, err error) {
	ctx, ia := e.begin(ctx, "operation", "E", "ValueSet", id)
	if ia != nil {
		ia.rec.Query = query.Encode()
	}
	defer func() { vs, err = endObject(vs, e.end(ctx, ia, err)) }()
	if e.profiles == nil {
		return nil, fhir.Errorf(fhir.NotSupported, "", "$expand needs the pathway profiles, which this server was started without")
	}
	if _, err := e.conditions(ctx, "ValueSet", fhir.PermRead); err != nil {
		return nil, err
	}
	vsURL := query.Get("url")
	if id != "" {
		v, err := e.store.Read(ctx, "ValueSet", id)
		if err != nil {
			return nil, err
		}
		obj, err := fhir.Parse(v.Body, fhir.Limits{})
		if err != nil {
			return nil, fhir.InternalError("expand", err)
		}
		vsURL, _ = obj["url"].(string)
	}
	if vsURL == "" {
		return nil, fhir.Errorf(fhir.Invalid, "url", "$expand needs a value set: ValueSet/{id}/$expand or ?url=")
	}
	offset, count := 0, -1
	for name, dst := range map[string]*int{"offset": &offset, "count": &count} {
		if s := query.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return nil, fhir.Errorf(fhir.Invalid, name, "%s must be a whole number, not %q", name, s)
			}
			*dst = n
		}
	}
	return e.profiles.Expand(vsURL, query.Get("filter"), offset, count, e.now())
}

// InstallConformance stores the pathway's conformance resources with their own
// ids, as new versions where they differ from what is stored, so that they can
// be read and searched like any resource. It is the one way such resources are
// written: the API serves them read-only.
func (e *Engine) InstallConformance(ctx context.Context) error {
	if e.profiles == nil {
		return nil
	}
	now := e.now()
	return e.store.Write(ctx, func(tx store.Tx) error {
		for _, src := range e.profiles.Resources() {
			obj := make(fhir.Object, len(src))
			for k, v := range src {
				if k != "meta" {
					obj[k] = v
				}
			}
			rt, id := fhir.ResourceType(obj), fhir.ID(obj)
			if err := fhir.IssuesError(fhir.Invalid, e.validator.Validate(obj)); err != nil {
				return err
			}
			cur, err := tx.Read(ctx, rt, id)
			next := 1
			switch {
			case err == nil:
				if !cur.Deleted && sameContent(cur.Body, obj) {
					continue
				}
				next = cur.VersionID + 1
			case fhir.KindOf(err) == fhir.Gone:
				next = cur.VersionID + 1
			case fhir.KindOf(err) != fhir.NotFound:
				return err
			}
			v, index, err := e.stamp(obj, nil, rt, id, next, now, "PUT")
			if err != nil {
				return err
			}
			if err := tx.Put(ctx, v, index); err != nil {
				return err
			}
		}
		return nil
	})
}

// sameContent compares a stored body with a resource, ignoring meta.
func sameContent(stored []byte, obj fhir.Object) bool {
	old, err := fhir.Parse(stored, fhir.Limits{})
	if err != nil {
		return false
	}
	delete(old, "meta")
	cp := make(fhir.Object, len(obj))
	for k, v := range obj {
		if k != "meta" {
			cp[k] = v
		}
	}
	a, _ := fhir.Marshal(old)
	b, _ := fhir.Marshal(cp)
	return string(a) == string(b)
}

// unchanged reports whether obj, to be written over the stored body, says the
// same: everything but the id (the same by construction) and the server-owned
// meta.versionId and meta.lastUpdated is compared. An update that changes nothing stores no new version, so that a
// re-run import (or a client re-sending what it has) leaves history alone.
func unchanged(stored []byte, obj fhir.Object) bool {
	old, err := fhir.Parse(stored, fhir.Limits{})
	if err != nil {
		return false
	}
	return string(withoutServerMeta(old)) == string(withoutServerMeta(obj))
}

// withoutServerMeta encodes obj without its id, meta.versionId and
// meta.lastUpdated (and without meta when nothing else is in it).
func withoutServerMeta(obj fhir.Object) []byte {
	cp := make(fhir.Object, len(obj))
	for k, v := range obj {
		if k != "id" {
			cp[k] = v
		}
	}
	if meta, ok := obj["meta"].(map[string]any); ok {
		m := make(map[string]any, len(meta))
		for k, v := range meta {
			switch k {
			case "versionId", "lastUpdated", "_versionId", "_lastUpdated":
			default:
				m[k] = v
			}
		}
		delete(cp, "meta")
		if len(m) > 0 {
			cp["meta"] = m
		}
	}
	b, _ := fhir.Marshal(cp)
	return b
}
