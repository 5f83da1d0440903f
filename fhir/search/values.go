package search

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"crs/fhir"
)

// Normalize folds a string for string search: lower case, common Latin accents
// removed, runs of white space and punctuation other than letters and digits
// collapsed to one space, trimmed.
func Normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		r = unicode.ToLower(fold(r))
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
		} else {
			space = true
		}
	}
	return b.String()
}

var accents = map[rune]rune{}

func init() {
	for base, list := range map[rune]string{
		'a': "àáâãäåāăą", 'c': "çćĉċč", 'd': "ďđ", 'e': "èéêëēĕėęě", 'g': "ĝğġģ", 'h': "ĥħ",
		'i': "ìíîïĩīĭįı", 'j': "ĵ", 'k': "ķ", 'l': "ĺļľŀł", 'n': "ñńņňŉ", 'o': "òóôõöøōŏő",
		'r': "ŕŗř", 's': "śŝşš", 't': "ţťŧ", 'u': "ùúûüũūŭůűų", 'w': "ŵ", 'y': "ýÿŷ", 'z': "źżž",
	} {
		for _, r := range list {
			accents[r] = base
			accents[unicode.ToUpper(r)] = base
		}
	}
}

func fold(r rune) rune {
	if r < 0xC0 {
		return r
	}
	if b, ok := accents[r]; ok {
		return b
	}
	return r
}

var dateRe = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// DateRange returns the range of instants a FHIR date, dateTime or instant
// denotes at its precision, High exclusive: 2026-11 is [2026-11-01, 2026-12-01).
// Values without a time zone are taken as UTC.
func DateRange(s string) (lo, hi time.Time, ok bool) {
	m := dateRe.FindStringSubmatch(s)
	if m == nil {
		return lo, hi, false
	}
	atoi := func(x string, def int) int {
		if x == "" {
			return def
		}
		n, _ := strconv.Atoi(x)
		return n
	}
	year, month, day := atoi(m[1], 0), atoi(m[2], 1), atoi(m[3], 1)
	hour, minute, sec := atoi(m[4], 0), atoi(m[5], 0), atoi(m[6], 0)
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return lo, hi, false
	}
	loc := time.UTC
	if tz := m[8]; tz != "" && tz != "Z" {
		h, _ := strconv.Atoi(tz[1:3])
		mi, _ := strconv.Atoi(tz[4:6])
		off := h*3600 + mi*60
		if tz[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(tz, off)
	}
	nanos := 0
	if f := m[7]; f != "" {
		digits := f[1:]
		if len(digits) > 9 {
			digits = digits[:9]
		}
		n, _ := strconv.Atoi(digits + strings.Repeat("0", 9-len(digits)))
		nanos = n
	}
	lo = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	if lo.Day() != day { // 2026-02-30
		return time.Time{}, time.Time{}, false
	}
	switch {
	case m[2] == "":
		hi = lo.AddDate(1, 0, 0)
	case m[3] == "":
		hi = lo.AddDate(0, 1, 0)
	case m[4] == "":
		hi = lo.AddDate(0, 0, 1)
	case m[6] == "":
		hi = lo.Add(time.Minute)
	case m[7] == "":
		hi = lo.Add(time.Second)
	default:
		hi = lo.Add(time.Duration(math.Pow10(9 - min(len(m[7])-1, 9))))
	}
	return lo.UTC(), hi.UTC(), true
}

var numberRe = regexp.MustCompile(`^[+-]?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$`)

// NumberRange parses a decimal and returns its value and the range its precision
// implies: 1.5 is [1.45, 1.55), 100 is [99.5, 100.5).
func NumberRange(s string) (v, lo, hi float64, ok bool) {
	m := numberRe.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, 0, 0, false
	}
	exp := 0
	if m[3] != "" {
		exp, _ = strconv.Atoi(m[3])
	}
	half := 0.5 * math.Pow10(exp-len(m[2]))
	return v, v - half, v + half, true
}

// tokenValues turns a node into token index values.
func tokenValues(code string, n node) []fhir.IndexValue {
	iv := fhir.IndexValue{Param: code, Type: fhir.TypeToken}
	switch v := n.v.(type) {
	case string:
		iv.Code = v
	case bool:
		iv.Code = strconv.FormatBool(v)
	case map[string]any:
		if codings, ok := v["coding"].([]any); ok || v["text"] != nil && v["value"] == nil && v["code"] == nil {
			text, _ := v["text"].(string)
			var out []fhir.IndexValue
			for _, c := range codings {
				cm, _ := c.(map[string]any)
				s, _ := cm["system"].(string)
				cd, _ := cm["code"].(string)
				disp, _ := cm["display"].(string)
				if s == "" && cd == "" {
					continue
				}
				t := text
				if t == "" {
					t = disp
				}
				out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeToken, System: s, Code: cd, Text: Normalize(t)})
			}
			if len(out) == 0 && text != "" {
				out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeToken, Text: Normalize(text)})
			}
			return out
		}
		iv.System, _ = v["system"].(string)
		if c, ok := v["code"].(string); ok { // Coding
			iv.Code = c
			d, _ := v["display"].(string)
			iv.Text = Normalize(d)
		} else { // Identifier, ContactPoint
			iv.Code, _ = v["value"].(string)
			if t, ok := v["type"].(map[string]any); ok {
				tt, _ := t["text"].(string)
				iv.Text = Normalize(tt)
				// For :of-type, each coding of Identifier.type with the value,
				// under the parameter name code + ":of-type".
				codings, _ := t["coding"].([]any)
				var out []fhir.IndexValue
				for _, c := range codings {
					cm, _ := c.(map[string]any)
					s, _ := cm["system"].(string)
					cd, _ := cm["code"].(string)
					if cd != "" && iv.Code != "" {
						out = append(out, fhir.IndexValue{Param: code + ":of-type", Type: fhir.TypeToken, System: s, Code: cd, Text: iv.Code})
					}
				}
				if len(out) > 0 {
					return append(out, iv)
				}
			}
		}
		if iv.System == "" && iv.Code == "" {
			return nil
		}
	default:
		return nil
	}
	return []fhir.IndexValue{iv}
}

// stringValues turns a node into string index values: each part of a HumanName
// or Address is a value of its own.
func stringValues(code string, n node) []fhir.IndexValue {
	var strs []string
	switch v := n.v.(type) {
	case string:
		strs = []string{v}
	case map[string]any:
		for _, k := range []string{"text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"} {
			switch x := v[k].(type) {
			case string:
				strs = append(strs, x)
			case []any:
				for _, e := range x {
					if s, ok := e.(string); ok {
						strs = append(strs, s)
					}
				}
			}
		}
	}
	out := make([]fhir.IndexValue, 0, len(strs))
	for _, s := range strs {
		if s != "" {
			out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeString, Str: Normalize(s), Exact: s})
		}
	}
	return out
}

// dateValues turns a date, dateTime, instant, Period or Timing into date ranges.
func dateValues(code string, n node) []fhir.IndexValue {
	one := func(lo, hi time.Time) fhir.IndexValue {
		return fhir.IndexValue{Param: code, Type: fhir.TypeDate, Low: lo, High: hi}
	}
	switch v := n.v.(type) {
	case string:
		if lo, hi, ok := DateRange(v); ok {
			return []fhir.IndexValue{one(lo, hi)}
		}
	case map[string]any:
		if _, isPeriod := v["start"]; isPeriod || v["end"] != nil {
			var lo, hi time.Time
			if s, ok := v["start"].(string); ok {
				lo, _, _ = DateRange(s)
			}
			if e, ok := v["end"].(string); ok {
				_, hi, _ = DateRange(e)
			}
			return []fhir.IndexValue{one(lo, hi)}
		}
		if events, ok := v["event"].([]any); ok { // Timing
			var out []fhir.IndexValue
			for _, e := range events {
				if s, ok := e.(string); ok {
					if lo, hi, ok := DateRange(s); ok {
						out = append(out, one(lo, hi))
					}
				}
			}
			return out
		}
	}
	return nil
}

// quantityValues turns a Quantity, a number or a Range into number or quantity
// index values.
func quantityValues(code string, typ fhir.ParamType, n node) []fhir.IndexValue {
	switch v := n.v.(type) {
	case map[string]any:
		if low, ok := v["low"].(map[string]any); ok || v["high"] != nil { // Range
			high, _ := v["high"].(map[string]any)
			iv := fhir.IndexValue{Param: code, Type: typ, NumLow: math.Inf(-1), NumHi: math.Inf(1)}
			if x, _, _, ok := NumberRange(number(low["value"])); ok {
				iv.NumLow, iv.Num = x, x
				iv.System, _ = low["system"].(string)
				iv.Code, _ = low["code"].(string)
			}
			if x, _, _, ok := NumberRange(number(high["value"])); ok {
				iv.NumHi = x
				if iv.Code == "" {
					iv.System, _ = high["system"].(string)
					iv.Code, _ = high["code"].(string)
				}
			}
			return []fhir.IndexValue{iv}
		}
		x, lo, hi, ok := NumberRange(number(v["value"]))
		if !ok {
			return nil
		}
		iv := fhir.IndexValue{Param: code, Type: typ, Num: x, NumLow: lo, NumHi: hi}
		iv.System, _ = v["system"].(string)
		iv.Code, _ = v["code"].(string)
		iv.Exact, _ = v["unit"].(string)
		return []fhir.IndexValue{iv}
	default:
		if x, lo, hi, ok := NumberRange(number(v)); ok {
			return []fhir.IndexValue{{Param: code, Type: typ, Num: x, NumLow: lo, NumHi: hi}}
		}
	}
	return nil
}

// referenceValues turns a Reference, canonical or uri into reference values.
func referenceValues(code string, n node) []fhir.IndexValue {
	iv := fhir.IndexValue{Param: code, Type: fhir.TypeReference}
	switch v := n.v.(type) {
	case string:
		setRef(&iv, v)
	case map[string]any:
		if ref, ok := v["reference"].(string); ok {
			setRef(&iv, ref)
		}
		if id, ok := v["identifier"].(map[string]any); ok {
			iv.System, _ = id["system"].(string)
			iv.Code, _ = id["value"].(string)
		}
	}
	if iv.RefID == "" && iv.Exact == "" && iv.Code == "" {
		return nil
	}
	return []fhir.IndexValue{iv}
}

// setRef sets RefType/RefID for a relative literal reference, Exact for anything
// else (an absolute URL, a canonical).
func setRef(iv *fhir.IndexValue, ref string) {
	if r, ok := fhir.ParseReference(ref, ""); ok {
		iv.RefType, iv.RefID = r.Type, r.ID
		return
	}
	iv.Exact = ref
}

func uriValues(code string, n node) []fhir.IndexValue {
	if s, ok := n.v.(string); ok && s != "" {
		return []fhir.IndexValue{{Param: code, Type: fhir.TypeURI, Exact: s}}
	}
	return nil
}
