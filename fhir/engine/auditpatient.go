package engine

import (
	"encoding/json"
	"strings"

	"crs/fhir"
	"crs/fhir/store"
)

// PatientOf names the patient a stored version is about (Patient/id), if any:
// the Patient itself, or the reference of its top-level subject or patient
// element (subject first) when that names a Patient.
//
// Every audited read of a resource other than a Patient asks this before its
// answer. Decoding the whole body for it cost more than the rest of the audit
// (25 µs and 255 allocations for a 1 KB ServiceRequest), so the body's top
// level is scanned for the two elements and only their values are decoded;
// a body the scan does not follow is decoded whole, as before
// (TestPatientOfScan and FuzzPatientOf hold the two to the same answers).
func PatientOf(v store.Version) string {
	if v.Type == "Patient" {
		return "Patient/" + v.ID
	}
	if len(v.Body) == 0 {
		return ""
	}
	if ref, ok := patientScan(v.Body); ok {
		return ref
	}
	return patientParsed(v.Body)
}

// patientParsed is PatientOf's answer from the decoded body.
func patientParsed(body []byte) string {
	obj, err := fhir.Parse(body, fhir.Limits{})
	if err != nil {
		return ""
	}
	for _, k := range []string{"subject", "patient"} {
		if m, ok := obj[k].(map[string]any); ok {
			if ref, _ := m["reference"].(string); strings.HasPrefix(ref, "Patient/") {
				return ref
			}
		}
	}
	return ""
}

// patientScan is PatientOf's answer from the top-level subject and patient
// values of body alone; ok is false when the body's top level is not a plain
// JSON object it can follow (an escaped key, a repeated element, bad
// structure), and the caller decodes it all.
func patientScan(body []byte) (ref string, ok bool) {
	var subject, patient []byte
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			if i >= len(body) || body[i] != '"' {
				return "", false
			}
			end := stringEnd(body, i)
			if end < 0 {
				return "", false
			}
			key := body[i+1 : end-1]
			for _, c := range key {
				if c == '\\' {
					return "", false
				}
			}
			i = skipSpace(body, end)
			if i >= len(body) || body[i] != ':' {
				return "", false
			}
			i = skipSpace(body, i+1)
			vend := valueEnd(body, i)
			if vend < 0 {
				return "", false
			}
			switch string(key) {
			case "subject":
				if subject != nil {
					return "", false
				}
				subject = body[i:vend]
			case "patient":
				if patient != nil {
					return "", false
				}
				patient = body[i:vend]
			}
			i = skipSpace(body, vend)
			if i >= len(body) {
				return "", false
			}
			if body[i] == '}' {
				i++
				break
			}
			if body[i] != ',' {
				return "", false
			}
			i = skipSpace(body, i+1)
		}
	}
	if skipSpace(body, i) != len(body) {
		return "", false
	}
	for _, v := range [][]byte{subject, patient} {
		if len(v) == 0 || v[0] != '{' {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(v, &m); err != nil {
			return "", false
		}
		if r, _ := m["reference"].(string); strings.HasPrefix(r, "Patient/") {
			return r, true
		}
	}
	return "", true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index after the JSON string starting at b[i] ('"'), or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd is the index after the JSON value starting at b[i], or -1 when its
// brackets or strings do not close. Literals and numbers are not checked:
// the body was valid JSON when it was stored.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
