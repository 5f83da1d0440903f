package engine

import (
	"strconv"
	"strings"

	"crs/fhir"
)

// checkBundleShape refuses a transaction or batch Bundle whose shape R4
// forbids before any entry is processed: an entry that is not an array (it
// was silently taken for no entries), entries or resources that are not
// objects, a fullUrl that is not a string, and urn:uuid: or urn:oid: fullUrls
// that name no UUID or OID (references to them could never be told apart).
func checkBundleShape(obj fhir.Object) error {
	raw, ok := obj["entry"]
	if !ok {
		return nil
	}
	entries, ok := raw.([]any)
	if !ok {
		return fhir.Errorf(fhir.Invalid, "Bundle.entry", "Bundle.entry must be an array of entries")
	}
	for i, x := range entries {
		where := "Bundle.entry[" + strconv.Itoa(i) + "]"
		m, ok := x.(map[string]any)
		if !ok {
			return fhir.Errorf(fhir.Invalid, where, "a Bundle entry must be a JSON object")
		}
		if r, ok := m["resource"]; ok {
			if _, ok := r.(map[string]any); !ok {
				return fhir.Errorf(fhir.Invalid, where+".resource", "a Bundle entry's resource must be a JSON object")
			}
		}
		u, ok := m["fullUrl"]
		if !ok {
			continue
		}
		s, ok := u.(string)
		switch {
		case !ok || s == "":
			return fhir.Errorf(fhir.Invalid, where+".fullUrl", "fullUrl must be a non-empty string")
		case strings.HasPrefix(s, "urn:uuid:") && !fhir.ValidUUIDURN(s):
			return fhir.Errorf(fhir.Invalid, where+".fullUrl", "fullUrl %q is not a urn:uuid: with a UUID (8-4-4-4-12 hexadecimal digits)", s)
		case strings.HasPrefix(s, "urn:oid:") && !fhir.ValidOIDURN(s):
			return fhir.Errorf(fhir.Invalid, where+".fullUrl", "fullUrl %q is not a urn:oid: with an OID such as urn:oid:1.2.3", s)
		}
	}
	return nil
}
