package fhir

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// NewUUID returns a random UUID (version 4), as used for server-assigned ids.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the platform's randomness is gone: cannot continue safely
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ValidUUIDURN reports whether s is a urn:uuid: URI with a well-formed UUID
// (8-4-4-4-12 hexadecimal digits; RFC 4122 reads either case, the R4 uuid
// type writes lower case).
func ValidUUIDURN(s string) bool {
	u, ok := strings.CutPrefix(s, "urn:uuid:")
	if !ok || len(u) != 36 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ValidOIDURN reports whether s is a urn:oid: URI with a well-formed OID, as
// the R4 oid type defines it: urn:oid:[0-2](\.(0|[1-9][0-9]*))+.
func ValidOIDURN(s string) bool {
	o, ok := strings.CutPrefix(s, "urn:oid:")
	if !ok || len(o) < 3 || o[0] < '0' || o[0] > '2' || o[1] != '.' {
		return false
	}
	for _, arc := range strings.Split(o[2:], ".") {
		if arc == "" || len(arc) > 1 && arc[0] == '0' {
			return false
		}
		for i := 0; i < len(arc); i++ {
			if arc[i] < '0' || arc[i] > '9' {
				return false
			}
		}
	}
	return true
}
