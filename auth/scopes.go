package auth

import (
	"strings"

	"crs/fhir"
)

// Permission is one SMART v2 permission letter (fhir.Permission, where the
// engine uses it without importing auth).
type Permission = fhir.Permission

// The SMART v2 permissions, as in package fhir.
const (
	Create = fhir.PermCreate
	Read   = fhir.PermRead
	Update = fhir.PermUpdate
	Delete = fhir.PermDelete
	Search = fhir.PermSearch
)

// PermissionOf maps a FHIR interaction to the permission it needs.
func PermissionOf(i fhir.Interaction) Permission { return fhir.PermissionOf(i) }

// Scope is one SMART scope on resources: a context (system, user or patient),
// a type (or * for all) and the permissions it grants.
type Scope struct {
	Context     string // system, user, patient
	Type        string // a resource type, or *
	Permissions string // a subset of "cruds", in that order
}

// ParseScopes reads the resource scopes of a token's scope claim (SMART v2
// "system/Patient.rs", v1 "user/Goal.read" = .rs, ".write" = .cud, ".*" =
// .cruds). Other scopes (openid, launch …) are ignored; so are malformed ones,
// which therefore grant nothing.
func ParseScopes(claim string) []Scope {
	var out []Scope
	for _, s := range strings.Fields(claim) {
		ctx, rest, ok := strings.Cut(s, "/")
		if !ok || (ctx != "system" && ctx != "user" && ctx != "patient") {
			continue
		}
		typ, perms, ok := strings.Cut(rest, ".")
		if !ok || typ == "" {
			continue
		}
		perms, _, _ = strings.Cut(perms, "?") // v2 query constraints are not supported: the scope keeps its type-wide meaning only if none
		if strings.Contains(rest, "?") {
			continue // a constrained scope grants less than its letters: grant nothing rather than too much
		}
		switch perms {
		case "read":
			perms = "rs"
		case "write":
			perms = "cud"
		case "*":
			perms = "cruds"
		default:
			if !validPermissions(perms) {
				continue
			}
		}
		if typ != "*" && !validType(typ) {
			continue
		}
		out = append(out, Scope{Context: ctx, Type: typ, Permissions: perms})
	}
	return out
}

// validPermissions checks a v2 permission string: letters of "cruds" in order,
// each at most once.
func validPermissions(p string) bool {
	if p == "" {
		return false
	}
	order := "cruds"
	last := -1
	for i := 0; i < len(p); i++ {
		k := strings.IndexByte(order, p[i])
		if k <= last {
			return false
		}
		last = k
	}
	return true
}

func validType(t string) bool {
	if t == "" || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for _, c := range t {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// Grants reports whether the scopes grant a permission on a resource type, and
// whether only patient-context scopes do. A patient/ scope grants its letters
// only within the compartment of the token's patient (the policy's
// patientContext conditions), so without a patient in the token (hasPatient
// false) it grants nothing.
func Grants(scopes []Scope, rt string, p Permission, hasPatient bool) (granted, patientOnly bool) {
	for _, s := range scopes {
		if (s.Type != "*" && s.Type != rt) || strings.IndexByte(s.Permissions, byte(p)) < 0 {
			continue
		}
		if s.Context != "patient" {
			return true, false
		}
		if hasPatient {
			granted, patientOnly = true, true
		}
	}
	return granted, patientOnly
}

// patientScoped reports whether any scope is a patient/ one.
func patientScoped(scopes []Scope) bool {
	for _, s := range scopes {
		if s.Context == "patient" {
			return true
		}
	}
	return false
}
