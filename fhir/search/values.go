package search

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"crs/fhir"
)

// Normalize folds a string for string search, the same way for indexed values
// and query values: lower case, common Latin diacritics removed (é is e, ß is
// ss), every run of characters other than letters and digits collapsed to one
// space, trimmed.
func Normalize(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || c >= 'A' && c <= 'Z' || !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ' ') {
			ascii = false
			break
		}
	}
	if ascii && !strings.Contains(s, "  ") && !strings.HasPrefix(s, " ") && !strings.HasSuffix(s, " ") {
		return s // already normal: lower-case letters, digits and single spaces
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	emit := func(r rune) {
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	for _, r := range s {
		r = unicode.ToLower(r)
		if r >= utf8.RuneSelf {
			if f, ok := folds[r]; ok {
				for _, x := range f {
					emit(x)
				}
				continue
			}
		}
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			emit(r)
		} else {
			space = true
		}
	}
	return b.String()
}

// folds maps lower-case accented Latin letters to their plain spelling.
var folds = map[rune]string{}

func init() {
	for base, list := range map[string]string{
		"a": "àáâãäåāăąǎ", "c": "çćĉċč", "d": "ďđð", "e": "èéêëēĕėęě", "g": "ĝğġģ", "h": "ĥħ",
		"i": "ìíîïĩīĭįıǐ", "j": "ĵ", "k": "ķ", "l": "ĺļľŀł", "n": "ñńņňŉ", "o": "òóôõöøōŏőǒ",
		"r": "ŕŗř", "s": "śŝşšș", "t": "ţťŧț", "u": "ùúûüũūŭůűųǔ", "w": "ŵ", "y": "ýÿŷ", "z": "źżž",
		"ae": "æ", "oe": "œ", "ss": "ß", "th": "þ",
	} {
		for _, r := range list {
			folds[r] = base
		}
	}
}

// DateRange returns the range of instants a FHIR date, dateTime or instant
// denotes at its precision, High exclusive: 2026-11 is [2026-11-01, 2026-12-01),
// 2026-11-22T10:00:05Z is one second, 2026-11-22T10:00:05.120Z one millisecond.
// Values without a time zone are taken as UTC. ok is false for anything that is
// not such a value, including impossible dates (2026-02-30, 2026-13).
func DateRange(s string) (lo, hi time.Time, ok bool) {
	// YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]]
	num := func(i, n int) (int, bool) {
		if i+n > len(s) {
			return 0, false
		}
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, okY := num(0, 4)
	if !okY {
		return lo, hi, false
	}
	month, day, hour, minute, sec, nanos := 1, 1, 0, 0, 0, 0
	prec := 0 // 0 year, 1 month, 2 day, 3 minute, 4 second, 5 fraction
	fracDigits := 0
	i := 4
	if i < len(s) && s[i] == '-' {
		if month, okY = num(i+1, 2); !okY {
			return lo, hi, false
		}
		prec, i = 1, i+3
		if i < len(s) && s[i] == '-' {
			if day, okY = num(i+1, 2); !okY {
				return lo, hi, false
			}
			prec, i = 2, i+3
			if i < len(s) && s[i] == 'T' {
				h, ok1 := num(i+1, 2)
				m, ok2 := num(i+4, 2)
				if !ok1 || !ok2 || s[i+3] != ':' {
					return lo, hi, false
				}
				hour, minute = h, m
				prec, i = 3, i+6
				if i < len(s) && s[i] == ':' {
					if sec, okY = num(i+1, 2); !okY {
						return lo, hi, false
					}
					prec, i = 4, i+3
					if i < len(s) && s[i] == '.' {
						j := i + 1
						for j < len(s) && s[j] >= '0' && s[j] <= '9' {
							j++
						}
						fracDigits = j - i - 1
						if fracDigits == 0 {
							return lo, hi, false
						}
						digits := s[i+1 : j]
						if len(digits) > 9 {
							digits = digits[:9]
						}
						n, _ := strconv.Atoi(digits + strings.Repeat("0", 9-len(digits)))
						nanos = n
						prec, i = 5, j
					}
				}
				loc := time.UTC
				if i < len(s) {
					switch s[i] {
					case 'Z':
						i++
					case '+', '-':
						oh, ok1 := num(i+1, 2)
						om, ok2 := num(i+4, 2)
						if !ok1 || !ok2 || s[i+3] != ':' || oh > 14 || om > 59 {
							return lo, hi, false
						}
						off := oh*3600 + om*60
						if s[i] == '-' {
							off = -off
						}
						loc = time.FixedZone("", off)
						i += 6
					}
				}
				if i != len(s) || hour > 23 || minute > 59 || sec > 59 {
					return lo, hi, false
				}
				lo = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
				if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
					return time.Time{}, time.Time{}, false
				}
				switch prec {
				case 3:
					hi = lo.Add(time.Minute)
				case 4:
					hi = lo.Add(time.Second)
				default:
					hi = lo.Add(time.Duration(math.Pow10(9 - min(fracDigits, 9))))
				}
				return lo.UTC(), hi.UTC(), true
			}
		}
	}
	if i != len(s) || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return lo, hi, false
	}
	lo = time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	switch prec {
	case 0:
		hi = lo.AddDate(1, 0, 0)
	case 1:
		hi = lo.AddDate(0, 1, 0)
	default:
		hi = lo.AddDate(0, 0, 1)
	}
	return lo, hi, true
}

func daysIn(year, month int) int {
	if month < 1 || month > 12 {
		return 0
	}
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// NumberRange parses a decimal and returns its value and the range its precision
// implies, High exclusive: 1.5 is [1.45, 1.55), 100 is [99.5, 100.5), 1e2 is
// [50, 150). ok is false for anything that is not a finite decimal.
func NumberRange(s string) (v, lo, hi float64, ok bool) {
	// [+-]digits[.digits][(e|E)[+-]digits]
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == start {
		return 0, 0, 0, false
	}
	decimals := 0
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if decimals = i - j; decimals == 0 {
			return 0, 0, 0, false
		}
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		j := i
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		k := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == k || i-k > 4 {
			return 0, 0, 0, false
		}
		exp, _ = strconv.Atoi(s[j:i])
	}
	if i != len(s) {
		return 0, 0, 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, 0, 0, false
	}
	half := 0.5 * math.Pow10(exp-decimals)
	return v, v - half, v + half, true
}

// numberText returns the text of a JSON number (or of a number written as a
// string), or "".
func numberText(v any) string {
	switch n := v.(type) {
	case json.Number:
		return string(n)
	case string:
		return n
	}
	return ""
}

// converter turns one item reached by a parameter's expression into index
// values of the parameter's type, appended to out.
type converter func(out []fhir.IndexValue, code string, it item) []fhir.IndexValue

func converterFor(t fhir.ParamType) converter {
	switch t {
	case fhir.TypeToken:
		return tokenValues
	case fhir.TypeString:
		return stringValues
	case fhir.TypeDate:
		return dateValues
	case fhir.TypeNumber:
		return numberValues
	case fhir.TypeQuantity:
		return quantityValues
	case fhir.TypeReference:
		return referenceValues
	case fhir.TypeURI:
		return uriValues
	}
	return nil
}

// contactSystems are the codes of ContactPoint.system: a value with one of these
// as system is a ContactPoint, not an Identifier.
var contactSystems = map[string]bool{"phone": true, "fax": true, "email": true, "pager": true, "url": true, "sms": true, "other": true}

// complexType returns the FHIR type of a JSON object reached by a token, string
// or date expression when the path did not tell it, from the elements present.
func complexType(typ string, m map[string]any) string {
	if typ != "" {
		return typ
	}
	switch {
	case m["coding"] != nil:
		return "CodeableConcept"
	case m["code"] != nil || m["system"] != nil && m["value"] == nil:
		return "Coding"
	case m["value"] != nil:
		if s, _ := m["system"].(string); contactSystems[s] || m["rank"] != nil {
			return "ContactPoint"
		}
		return "Identifier"
	case m["start"] != nil || m["end"] != nil:
		return "Period"
	case m["event"] != nil || m["repeat"] != nil:
		return "Timing"
	case m["text"] != nil:
		return "CodeableConcept"
	}
	return ""
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// tokenValues: code, string, id, uri and boolean give Code; Coding gives System,
// Code and the display as Text; CodeableConcept each of its codings, with the
// concept's text and the display as Text (or one Text-only value when it has
// no coding); Identifier System and value as Code, the type's text as Text, and
// each coding of its type with the value under the parameter "code:of-type";
// ContactPoint the value as Code and its system as System.
func tokenValues(out []fhir.IndexValue, code string, it item) []fhir.IndexValue {
	tok := func(system, c, text string) fhir.IndexValue {
		return fhir.IndexValue{Param: code, Type: fhir.TypeToken, System: system, Code: c, Text: text}
	}
	switch v := it.v.(type) {
	case string:
		if v != "" {
			out = append(out, tok("", v, ""))
		}
	case bool:
		out = append(out, tok("", strconv.FormatBool(v), ""))
	case json.Number:
		out = append(out, tok("", string(v), ""))
	case map[string]any:
		switch complexType(it.typ, v) {
		case "CodeableConcept":
			text := Normalize(str(v, "text"))
			n := len(out)
			codings, _ := v["coding"].([]any)
			for _, c := range codings {
				cm, _ := c.(map[string]any)
				s, cd := str(cm, "system"), str(cm, "code")
				if s == "" && cd == "" {
					continue
				}
				t := Normalize(str(cm, "display"))
				if text != "" && t != text {
					if t == "" {
						t = text
					} else {
						t = text + "|" + t // '|' never occurs in a normalised query
					}
				}
				out = append(out, tok(s, cd, t))
			}
			if len(out) == n && text != "" {
				out = append(out, tok("", "", text))
			}
		case "Coding":
			if s, cd := str(v, "system"), str(v, "code"); s != "" || cd != "" {
				out = append(out, tok(s, cd, Normalize(str(v, "display"))))
			}
		case "Identifier":
			value := str(v, "value")
			typ, _ := v["type"].(map[string]any)
			if s := str(v, "system"); s != "" || value != "" {
				out = append(out, tok(s, value, Normalize(str(typ, "text"))))
			}
			if value != "" {
				codings, _ := typ["coding"].([]any)
				for _, c := range codings {
					cm, _ := c.(map[string]any)
					if cd := str(cm, "code"); cd != "" {
						out = append(out, fhir.IndexValue{Param: code + ":of-type", Type: fhir.TypeToken, System: str(cm, "system"), Code: cd, Text: value})
					}
				}
			}
		case "ContactPoint":
			if value := str(v, "value"); value != "" {
				out = append(out, tok(str(v, "system"), value, ""))
			}
		}
	}
	return out
}

// nameParts are the string elements of HumanName and Address that string
// parameters search, each as a value of its own.
var nameParts = []string{"text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"}

// stringValues: a string is one value; HumanName and Address give one value per
// part (family, each given, prefix, suffix, text; each line, city, district,
// state, postalCode, country, text).
func stringValues(out []fhir.IndexValue, code string, it item) []fhir.IndexValue {
	one := func(s string) {
		if s != "" {
			out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeString, Str: Normalize(s), Exact: s})
		}
	}
	switch v := it.v.(type) {
	case string:
		one(v)
	case map[string]any:
		for _, k := range nameParts {
			switch x := v[k].(type) {
			case string:
				one(x)
			case []any:
				for _, e := range x {
					if s, ok := e.(string); ok {
						one(s)
					}
				}
			}
		}
	}
	return out
}

// dateValues: date, dateTime and instant give their range at their precision;
// Period from its start's low to its end's high (open ends are the zero time);
// Timing each event (or its repeat.boundsPeriod).
func dateValues(out []fhir.IndexValue, code string, it item) []fhir.IndexValue {
	one := func(lo, hi time.Time) {
		out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeDate, Low: lo, High: hi})
	}
	period := func(m map[string]any) {
		var lo, hi time.Time
		okS, okE := false, false
		if s, ok := m["start"].(string); ok {
			lo, _, okS = DateRange(s)
		}
		if e, ok := m["end"].(string); ok {
			_, hi, okE = DateRange(e)
		}
		if okS || okE {
			one(lo, hi)
		}
	}
	switch v := it.v.(type) {
	case string:
		if lo, hi, ok := DateRange(v); ok {
			one(lo, hi)
		}
	case map[string]any:
		switch complexType(it.typ, v) {
		case "Period":
			period(v)
		case "Timing":
			events, _ := v["event"].([]any)
			for _, e := range events {
				if s, ok := e.(string); ok {
					if lo, hi, ok := DateRange(s); ok {
						one(lo, hi)
					}
				}
			}
			if len(events) == 0 {
				if rep, ok := v["repeat"].(map[string]any); ok {
					if bp, ok := rep["boundsPeriod"].(map[string]any); ok {
						period(bp)
					}
				}
			}
		}
	}
	return out
}

// numberValues: a number gives its value and precision range.
func numberValues(out []fhir.IndexValue, code string, it item) []fhir.IndexValue {
	if x, lo, hi, ok := NumberRange(numberText(it.v)); ok {
		out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeNumber, Num: x, NumLow: lo, NumHi: hi})
	}
	return out
}

// quantityValues: Quantity (and Age, Duration, Count, Distance) gives its value
// and precision range, System and Code for the unit code and Exact for the unit
// as written; a comparator opens the range on its side. Money gives its
// currency as Code in urn:iso:std:iso:4217. Range gives [low, high) with the
// low's unit (open ends are infinite). A bare number is a unitless quantity.
func quantityValues(out []fhir.IndexValue, code string, it item) []fhir.IndexValue {
	m, ok := it.v.(map[string]any)
	if !ok {
		if x, lo, hi, ok := NumberRange(numberText(it.v)); ok {
			out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeQuantity, Num: x, NumLow: lo, NumHi: hi})
		}
		return out
	}
	typ := it.typ
	if typ == "" && (m["low"] != nil || m["high"] != nil) {
		typ = "Range"
	}
	if typ == "Range" {
		low, _ := m["low"].(map[string]any)
		high, _ := m["high"].(map[string]any)
		iv := fhir.IndexValue{Param: code, Type: fhir.TypeQuantity, NumLow: math.Inf(-1), NumHi: math.Inf(1)}
		found := false
		if x, lo, _, ok := NumberRange(numberText(low["value"])); ok {
			iv.Num, iv.NumLow, found = x, lo, true
			iv.System, iv.Code, iv.Exact = str(low, "system"), str(low, "code"), str(low, "unit")
		}
		if x, _, hi, ok := NumberRange(numberText(high["value"])); ok {
			iv.NumHi = hi
			if !found {
				iv.Num = x
				iv.System, iv.Code, iv.Exact = str(high, "system"), str(high, "code"), str(high, "unit")
			}
			found = true
		}
		if found {
			out = append(out, iv)
		}
		return out
	}
	x, lo, hi, ok := NumberRange(numberText(m["value"]))
	if !ok {
		return out
	}
	iv := fhir.IndexValue{Param: code, Type: fhir.TypeQuantity, Num: x, NumLow: lo, NumHi: hi,
		System: str(m, "system"), Code: str(m, "code"), Exact: str(m, "unit")}
	if cur := str(m, "currency"); cur != "" && iv.Code == "" {
		iv.System, iv.Code = "urn:iso:std:iso:4217", cur
	}
	switch str(m, "comparator") {
	case "<", "<=":
		iv.NumLow = math.Inf(-1)
	case ">", ">=":
		iv.NumHi = math.Inf(1)
	}
	return append(out, iv)
}

// referenceValues: a literal reference Type/id (or Type/id/_history/n) gives
// RefType and RefID; any other reference (an absolute URL, a urn) and a
// canonical or uri gives Exact; Reference.identifier gives System and Code.
// Contained (#id) and display-only references give nothing.
func referenceValues(out []fhir.IndexValue, code string, it item) []fhir.IndexValue {
	iv := fhir.IndexValue{Param: code, Type: fhir.TypeReference}
	switch v := it.v.(type) {
	case string:
		setRef(&iv, v)
	case map[string]any:
		setRef(&iv, str(v, "reference"))
		if id, ok := v["identifier"].(map[string]any); ok {
			iv.System, iv.Code = str(id, "system"), str(id, "value")
		}
	}
	if iv.RefID == "" && iv.Exact == "" && iv.Code == "" && iv.System == "" {
		return out
	}
	return append(out, iv)
}

// setRef sets RefType/RefID for a relative literal reference, Exact for anything
// else but a contained reference.
func setRef(iv *fhir.IndexValue, ref string) {
	if ref == "" || ref[0] == '#' {
		return
	}
	if r, ok := fhir.ParseReference(ref, ""); ok {
		typ, id := r.Type, r.ID
		iv.RefType, iv.RefID = typ, id
		return
	}
	iv.Exact = ref
}

// uriValues: a uri, url or canonical gives Exact.
func uriValues(out []fhir.IndexValue, code string, it item) []fhir.IndexValue {
	if s, ok := it.v.(string); ok && s != "" {
		out = append(out, fhir.IndexValue{Param: code, Type: fhir.TypeURI, Exact: s})
	}
	return out
}
