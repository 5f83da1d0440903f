package fhir

import "testing"

func TestURNSyntax(t *testing.T) {
	for _, c := range []struct {
		s         string
		uuid, oid bool
	}{
		{"urn:uuid:" + NewUUID(), true, false},
		{"urn:uuid:C7A2D9E0-1B2C-4D5E-8F90-123456789ABC", true, false},
		{"urn:uuid:xyz", false, false},
		{"urn:uuid:c7a2d9e0-1b2c-4d5e-8f90-123456789abcd", false, false},
		{"urn:uuid:c7a2d9e0_1b2c-4d5e-8f90-123456789abc", false, false},
		{"urn:uuid:c7a2d9e0-1b2c-4d5e-8f90-123456789abg", false, false},
		{"urn:oid:2.16.840.1.113883", false, true},
		{"urn:oid:1.0.3", false, true},
		{"urn:oid:3.1", false, false},
		{"urn:oid:1", false, false},
		{"urn:oid:1.02", false, false},
		{"urn:oid:1..2", false, false},
		{"urn:oid:1.2.", false, false},
		{"urn:oid:1.2a", false, false},
	} {
		if got := ValidUUIDURN(c.s); got != c.uuid {
			t.Errorf("ValidUUIDURN(%q) = %v", c.s, got)
		}
		if got := ValidOIDURN(c.s); got != c.oid {
			t.Errorf("ValidOIDURN(%q) = %v", c.s, got)
		}
	}
}
