package auth

import (
	"context"
	"testing"

	"crs/fhir"
	"crs/fhir/search"
	"crs/profiles"
)

// pathwayParams is R4's search parameters plus the pathway's (responsible-la
// among them), as cmd/crs loads them.
func pathwayParams(t *testing.T) *search.Registry {
	t.Helper()
	prof, err := profiles.Load("")
	if err != nil {
		t.Fatal(err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return params
}

func TestDefaultPolicyLoads(t *testing.T) {
	p, err := LoadPolicy("", pathwayParams(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Roles()) != 7 {
		t.Errorf("roles: %v", p.Roles())
	}
}

func TestConditions(t *testing.T) {
	p, err := LoadPolicy("", pathwayParams(t))
	if err != nil {
		t.Fatal(err)
	}
	all := ParseScopes("system/*.cruds")
	for _, c := range []struct {
		who        Principal
		rt         string
		perm       Permission
		kind       fhir.Kind // 0: allowed
		restricted bool
	}{
		{Principal{Roles: []string{"auditor"}, Scopes: all}, "CarePlan", Read, 0, false},
		{Principal{Roles: []string{"auditor"}, Scopes: all}, "CarePlan", Update, fhir.Forbidden, false},
		{Principal{Roles: []string{"auditor"}, Scopes: ParseScopes("system/CarePlan.rs")}, "Goal", Read, fhir.Forbidden, false},
		{Principal{Roles: []string{"care-provider"}, Org: "P1", Scopes: all}, "CarePlan", Create, 0, true},
		{Principal{Roles: []string{"care-provider"}, Scopes: all}, "CarePlan", Create, fhir.Forbidden, false},
		{Principal{Roles: []string{"care-provider"}, Org: "P1", Scopes: all}, "AuditEvent", Read, fhir.Forbidden, false},
		{Principal{Roles: []string{"acute-trust"}, Org: "RKB", Scopes: all}, "Patient", Create, 0, false},
		{Principal{Roles: []string{"council"}, LocalAuthority: "E10000031", Scopes: all}, "Goal", Search, 0, true},
		{Principal{Roles: []string{"nobody"}, Scopes: all}, "Goal", Search, fhir.Forbidden, false},
		{Principal{Roles: []string{"admin"}, Scopes: ParseScopes("system/Goal.rs")}, "Goal", Create, fhir.Forbidden, false},
		// patient/ scopes: bounded to the token's patient, nothing without one,
		// nothing on types outside a person's records.
		{Principal{Roles: []string{"admin"}, Patient: "pat1", Scopes: ParseScopes("patient/*.rs")}, "CarePlan", Search, 0, true},
		{Principal{Roles: []string{"admin"}, Patient: "pat1", Scopes: ParseScopes("patient/*.rs")}, "Patient", Read, 0, true},
		{Principal{Roles: []string{"admin"}, Scopes: ParseScopes("patient/*.rs")}, "CarePlan", Search, fhir.Forbidden, false},
		{Principal{Roles: []string{"admin"}, Patient: "a/b", Scopes: ParseScopes("patient/*.rs")}, "CarePlan", Search, fhir.Forbidden, false},
		{Principal{Roles: []string{"admin"}, Patient: "pat1", Scopes: ParseScopes("patient/*.rs")}, "Organization", Read, fhir.Forbidden, false},
		{Principal{Roles: []string{"admin"}, Patient: "pat1", Scopes: ParseScopes("patient/*.rs")}, "CarePlan", Create, fhir.Forbidden, false},
		{Principal{Roles: []string{"admin"}, Patient: "pat1", Scopes: ParseScopes("patient/*.rs system/Organization.rs")}, "Organization", Read, 0, false},
		{Principal{Roles: []string{"nobody"}, Patient: "pat1", Scopes: ParseScopes("patient/*.rs")}, "CarePlan", Search, fhir.Forbidden, false},
	} {
		who := c.who
		conds, err := p.Conditions(WithPrincipal(context.Background(), &who), c.rt, c.perm)
		if fhir.KindOf(err) != c.kind && !(c.kind == 0 && err == nil) {
			t.Errorf("%v %s %c: %v", c.who.Roles, c.rt, c.perm, err)
			continue
		}
		if err == nil && (conds != nil) != c.restricted {
			t.Errorf("%v %s %c: conditions %v", c.who.Roles, c.rt, c.perm, conds)
		}
	}
	if _, err := p.Conditions(context.Background(), "Goal", Read); fhir.KindOf(err) != fhir.Unauthorized {
		t.Errorf("no caller: %v", err)
	}
}

// TestPatientContextConditions checks what bounds a patient/ scope: the role's
// conditions and the patient's, both.
func TestPatientContextConditions(t *testing.T) {
	p, err := LoadPolicy("", pathwayParams(t))
	if err != nil {
		t.Fatal(err)
	}
	who := Principal{Roles: []string{"care-provider"}, Org: "P1", Patient: "pat1", Scopes: ParseScopes("patient/CarePlan.rs")}
	conds, err := p.Conditions(WithPrincipal(context.Background(), &who), "CarePlan", Search)
	if err != nil {
		t.Fatal(err)
	}
	if len(conds) < 2 {
		t.Fatalf("conditions %+v: want the role's and the patient's", conds)
	}
	last := conds[len(conds)-1]
	if last.Def.Code != "subject" || len(last.Values) != 1 || last.Values[0].Raw != "Patient/pat1" {
		t.Errorf("last condition %s=%+v: want subject=Patient/pat1", last.Def.Code, last.Values)
	}
}

func TestParseScopes(t *testing.T) {
	for s, want := range map[string]string{
		"system/Patient.rs":     "system Patient rs",
		"user/Goal.read":        "user Goal rs",
		"system/*.write":        "system * cud",
		"system/CarePlan.*":     "system CarePlan cruds",
		"system/Patient.sr":     "",
		"system/Patient.rs?x=1": "",
		"openid":                "",
		"system/patient.rs":     "",
		"system/Patient.rrs":    "",
	} {
		got := ""
		if sc := ParseScopes(s); len(sc) == 1 {
			got = sc[0].Context + " " + sc[0].Type + " " + sc[0].Permissions
		}
		if got != want {
			t.Errorf("%s: %q, want %q", s, got, want)
		}
	}
}
