package engine

import (
	"context"
	"net/url"
	"strings"

	"crs/fhir"
	"crs/profiles"
)

// Translate runs ConceptMap $translate over the pathway's embedded ConceptMaps
// (the same ones the importers translate partner codes with). id names a stored
// ConceptMap (instance level); otherwise query gives url. The inputs are those
// of R4 $translate: url, system, code, coding (system|code), source, target,
// targetsystem. The answer is a Parameters resource.
func (e *Engine) Translate(ctx context.Context, id string, query url.Values) (out fhir.Object, err error) {
	ctx, ia := e.begin(ctx, "operation", "E", "ConceptMap", id)
	if ia != nil {
		ia.rec.Query = query.Encode()
	}
	defer func() { out, err = endObject(out, e.end(ctx, ia, err)) }()
	if e.profiles == nil {
		return nil, fhir.Errorf(fhir.NotSupported, "", "$translate needs the pathway's ConceptMaps, which this server was started without")
	}
	if _, err := e.conditions(ctx, "ConceptMap", fhir.PermRead); err != nil {
		return nil, err
	}
	req := profiles.TranslateRequest{
		URL: query.Get("url"), System: query.Get("system"), Code: query.Get("code"),
		Source: query.Get("source"), Target: query.Get("target"), TargetSystem: query.Get("targetsystem"),
	}
	if c := query.Get("coding"); c != "" && req.Code == "" {
		if sys, code, ok := strings.Cut(c, "|"); ok {
			req.System, req.Code = sys, code
		} else {
			req.Code = c
		}
	}
	if id != "" {
		if err := checkID(id); err != nil {
			return nil, err
		}
		if err := e.mayRead(ctx, "ConceptMap", id); err != nil {
			return nil, err
		}
		v, err := e.store.Read(ctx, "ConceptMap", id)
		if err != nil {
			return nil, err
		}
		if v.Deleted {
			return nil, fhir.Errorf(fhir.Gone, "", "ConceptMap/%s was deleted", id)
		}
		obj, err := fhir.Parse(v.Body, fhir.Limits{})
		if err != nil {
			return nil, fhir.InternalError("translate", err)
		}
		req.URL, _ = obj["url"].(string)
	}
	out, err = e.profiles.Translate(req)
	return out, fhir.WithOp("translate", err)
}
