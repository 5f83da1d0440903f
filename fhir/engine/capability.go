package engine

import (
	"context"
	"strings"

	"crs/fhir"
)

// Software names and versions the server in its CapabilityStatement.
type Software struct {
	Name    string
	Version string
}

// CapabilityStatement builds the server's CapabilityStatement from what is
// registered: the served types, the interactions allowed on each and the search
// parameters the registry can evaluate. It claims nothing else.
func (e *Engine) CapabilityStatement(sw Software) map[string]any {
	var resources []any
	pathwayProfiles := map[string]string{}
	if e.profiles != nil {
		for _, p := range e.profiles.PathwayProfiles() {
			pathwayProfiles[p.Type] = p.URL
		}
	}
	for _, rt := range fhir.ServedTypes() {
		var interactions []any
		writes := false
		for _, i := range fhir.Interactions(rt) {
			interactions = append(interactions, map[string]any{"code": string(i)})
			if i == fhir.Create || i == fhir.Update {
				writes = true
			}
		}
		var params []any
		for _, p := range e.params.Params(rt) {
			sp := map[string]any{"name": p.Code, "type": string(p.Type)}
			if p.URL != "" {
				sp["definition"] = p.URL
			}
			params = append(params, sp)
		}
		for _, name := range []string{"_count", "_sort", "_total", "_summary", "_elements", "_has"} {
			params = append(params, map[string]any{"name": name, "type": "special"})
		}
		includes := []any{"*"}
		for _, p := range e.params.Params(rt) {
			if p.Type == fhir.TypeReference {
				includes = append(includes, rt+":"+p.Code)
			}
		}
		var revincludes []any
		for _, other := range fhir.ServedTypes() {
			for _, p := range e.params.Params(other) {
				if p.Type == fhir.TypeReference && (len(p.Targets) == 0 || contains(p.Targets, rt)) {
					revincludes = append(revincludes, other+":"+p.Code)
				}
			}
		}
		r := map[string]any{
			"type":             rt,
			"interaction":      interactions,
			"versioning":       "versioned",
			"readHistory":      true,
			"conditionalRead":  "full-support",
			"searchParam":      params,
			"searchInclude":    includes,
			"searchRevInclude": revincludes,
		}
		var ops []any
		if _, ok := everything[rt]; ok {
			ops = append(ops, map[string]any{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/" + rt + "-everything"})
		}
		if writes {
			ops = append(ops, map[string]any{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"})
		}
		if rt == "Measure" { // answered by the measures door (crs/measures)
			ops = append(ops, map[string]any{"name": "evaluate-measure", "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure"})
		}
		if rt == "ValueSet" && e.profiles != nil {
			ops = append(ops, map[string]any{"name": "expand", "definition": "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"})
		}
		if rt == "ConceptMap" && e.profiles != nil {
			ops = append(ops, map[string]any{"name": "translate", "definition": "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"})
		}
		if rt == "Subscription" {
			ops, r = subscriptionCapability(e.outbox, ops, r)
		}
		if ops != nil {
			r["operation"] = ops
		}
		if p, ok := pathwayProfiles[rt]; ok {
			r["supportedProfile"] = []any{p}
			if e.enforcement == EnforceStrict {
				r["profile"] = p // every write of the type conforms to it
			}
		}
		if writes {
			r["versioning"] = "versioned-update"
			r["updateCreate"] = true
			r["conditionalCreate"] = true
			r["conditionalUpdate"] = true
			r["conditionalDelete"] = map[bool]string{false: "single", true: "multiple"}[e.maxCondDelete > 1]
		}
		resources = append(resources, r)
	}
	security := map[string]any{"cors": false, "description": "Development mode: no authentication (loopback only)."}
	if e.access != nil {
		security = map[string]any{
			"cors": false,
			"service": []any{map[string]any{"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
			"description": "OAuth 2.0 bearer tokens (JWT) from the region's OpenID Connect provider: SMART Backend Services " +
				"(client_credentials with private_key_jwt); SMART v2 scopes; see " + e.base + "/.well-known/smart-configuration. " +
				"An access policy bounds each role to its records; every interaction is audited.",
		}
	}
	return map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         formatInstant(e.now()),
		"kind":         "instance",
		"software":     map[string]any{"name": sw.Name, "version": sw.Version},
		"implementation": map[string]any{
			"description": "crs: the shared record of the Community Recovery pathway",
			"url":         e.base,
		},
		"fhirVersion": "4.0.1",
		"format":      []any{"json", "application/fhir+json"},
		"rest": []any{map[string]any{
			"mode":        "server",
			"security":    security,
			"resource":    resources,
			"interaction": []any{map[string]any{"code": "transaction"}, map[string]any{"code": "batch"}, map[string]any{"code": "history-system"}},
			"compartment": compartmentURLs(),
			"documentation": "Chained parameters (subject:Patient.identifier=…) to depth 4 and reverse chains (_has) on every reference parameter; " +
				"_include and _revinclude with :iterate; PATCH with JSON Patch; $everything on Patient and EpisodeOfCare; " +
				"$validate on every writable type; $expand on the pathway's value sets; $translate on its ConceptMaps. Profile enforcement: " + string(e.enforcement) + ".",
		}},
	}
}

// compartmentURLs lists the R4 compartments searchable as /Type/id/Type.
func compartmentURLs() []any {
	var out []any
	for _, c := range fhir.ServedTypes() {
		if _, ok := compartments[c]; ok && c != "EpisodeOfCare" {
			out = append(out, "http://hl7.org/fhir/CompartmentDefinition/"+strings.ToLower(c[:1])+c[1:])
		}
	}
	return out
}

// Capabilities answers the capabilities interaction with the
// CapabilityStatement, recorded in the audit trail like every interaction.
func (e *Engine) Capabilities(ctx context.Context, sw Software) (cs map[string]any, err error) {
	ctx, ia := e.begin(ctx, "capabilities", "R", "", "")
	defer func() {
		if err = e.end(ctx, ia, err); err != nil {
			cs = nil
		}
	}()
	return e.CapabilityStatement(sw), nil
}
