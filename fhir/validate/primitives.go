package validate

import (
	"strconv"
	"strings"
)

// The lexical checks of the R4 primitive types. Each implements the regular
// expression the R4 StructureDefinition of the type gives (the table keeps
// them; TestPrimitivesAgreeWithSpecRegex holds the two together) and adds what a
// regular expression cannot say: real calendar dates, the 32-bit range of
// integer, positiveInt ≥ 1, valid UUIDs. They are hand-written because they run
// for every primitive of every resource written.

// checkNumber checks the text of a JSON number as a value of type t (integer,
// positiveInt, unsignedInt or decimal); it returns why not, or "".
func checkNumber(t, s string) string {
	if t == "decimal" {
		return "" // the JSON number grammar is the decimal grammar
	}
	if strings.ContainsAny(s, ".eE") {
		return "an integer has no fraction or exponent"
	}
	if t != "integer" && s[0] == '-' {
		return "a " + t + " has no sign"
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return "out of the 32-bit range of integers (-2147483648 to 2147483647)"
	}
	switch {
	case t == "positiveInt" && n < 1:
		return "a positiveInt is 1 or more"
	}
	return ""
}

// checkString checks a non-empty JSON string as a value of type t; it returns
// why not, or "".
func checkString(t, s string) string {
	switch t {
	case "string", "markdown":
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 && c != '\t' && c != '\r' && c != '\n' {
				return "control character " + strconv.QuoteRune(rune(c)) + " at byte " + strconv.Itoa(i)
			}
		}
		if tag := activeHTML(s); tag != "" {
			return "it holds an HTML <" + tag + "> tag, which could run in a page that shows it"
		}
	case "code":
		if !validCode(s) {
			return "a code has no leading, trailing or repeated whitespace"
		}
	case "id":
		if !validID(s) {
			return "an id is 1 to 64 letters, digits, '-' and '.'"
		}
	case "uri", "url", "canonical":
		if i := strings.IndexAny(s, " \t\r\n\v\f"); i >= 0 {
			return "a " + t + " has no whitespace"
		}
		if strings.HasPrefix(s, "urn:uuid:") && !validUUID(s) {
			return "a urn:uuid: URI must name a UUID (lower-case hex, 8-4-4-4-12)"
		}
		if strings.HasPrefix(s, "urn:oid:") && !validOID(s) {
			return "a urn:oid: URI must name an OID (urn:oid:2.16.840…)"
		}
	case "uuid":
		if !validUUID(s) {
			return "a uuid is urn:uuid: followed by a lower-case UUID"
		}
	case "oid":
		if !validOID(s) {
			return "an oid is urn:oid: followed by a dotted number"
		}
	case "date":
		return checkDateTime(s, dateOnly)
	case "dateTime":
		return checkDateTime(s, dateTimeKind)
	case "instant":
		return checkDateTime(s, instantKind)
	case "time":
		if rest, ok := checkTime(s); !ok || rest != "" {
			return "a time is hh:mm:ss with optional fractional seconds"
		}
	case "base64Binary":
		return checkBase64(s)
	}
	return ""
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// validCode: [^\s]+(\s[^\s]+)*
func validCode(s string) bool {
	if isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return true
}

// validID: [A-Za-z0-9\-\.]{1,64}
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validUUID: urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
func validUUID(s string) bool {
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
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// validOID: urn:oid:[0-2](\.(0|[1-9][0-9]*))+
func validOID(s string) bool {
	o, ok := strings.CutPrefix(s, "urn:oid:")
	if !ok || len(o) < 3 || o[0] < '0' || o[0] > '2' || o[1] != '.' {
		return false
	}
	for _, part := range strings.Split(o[2:], ".") {
		if part == "" || (part[0] == '0' && len(part) > 1) || strings.Trim(part, "0123456789") != "" {
			return false
		}
	}
	return true
}

type dateKind int

const (
	dateOnly dateKind = iota
	dateTimeKind
	instantKind
)

// checkDateTime checks a date, dateTime or instant: the R4 regular expression
// (a year other than 0000, optional month and day, then for a dateTime an
// optional time with its zone, which an instant requires) and a day that exists
// in its month (2026-02-30 and 1900-02-29 do not).
func checkDateTime(s string, kind dateKind) string {
	const why = "a date is YYYY, YYYY-MM or YYYY-MM-DD"
	if len(s) < 4 || !digits(s[:4]) || s[:4] == "0000" {
		if kind == dateOnly {
			return why
		}
		return "expected YYYY[-MM[-DD[Thh:mm:ss[.fff](Z|±hh:mm)]]]"
	}
	year, _ := strconv.Atoi(s[:4])
	rest := s[4:]
	parts := 1
	month := 0
	if rest != "" {
		if len(rest) < 3 || rest[0] != '-' || !digits(rest[1:3]) {
			return why
		}
		month, _ = strconv.Atoi(rest[1:3])
		if month < 1 || month > 12 {
			return "month " + rest[1:3] + " does not exist"
		}
		rest = rest[3:]
		parts = 2
	}
	if rest != "" {
		if len(rest) < 3 || rest[0] != '-' || !digits(rest[1:3]) {
			return why
		}
		day, _ := strconv.Atoi(rest[1:3])
		if day < 1 || day > daysIn(year, month) {
			return "day " + rest[1:3] + " does not exist in " + s[:7]
		}
		rest = rest[3:]
		parts = 3
	}
	if kind == instantKind && (parts < 3 || rest == "") {
		return "an instant is a full date and time with its zone: YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)"
	}
	if rest == "" {
		return ""
	}
	if kind == dateOnly {
		return why
	}
	if parts < 3 || rest[0] != 'T' {
		return "a time follows a full date, after 'T'"
	}
	rest, ok := checkTime(rest[1:])
	if !ok {
		return "a time is hh:mm:ss with optional fractional seconds"
	}
	switch {
	case rest == "Z":
		return ""
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && digits(rest[1:3]) && rest[3] == ':' && digits(rest[4:6]):
		h, m := rest[1:3], rest[4:6]
		if h == "14" && m == "00" || h < "14" && m < "60" {
			return ""
		}
		return "time zone " + rest + " is out of range"
	case rest == "":
		return "a time needs its zone (Z or ±hh:mm)"
	}
	return "the time zone is Z or ±hh:mm"
}

// checkTime checks hh:mm:ss(.f+)? at the start of s and returns what follows.
func checkTime(s string) (string, bool) {
	if len(s) < 8 || !digits(s[:2]) || s[2] != ':' || !digits(s[3:5]) || s[5] != ':' || !digits(s[6:8]) {
		return "", false
	}
	if s[:2] > "23" || s[3:5] > "59" || s[6:8] > "60" {
		return "", false
	}
	rest := s[8:]
	if rest != "" && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 1 {
			return "", false
		}
		rest = rest[i:]
	}
	return rest, true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func daysIn(year, month int) int {
	switch month {
	case 0: // the month is not given
		return 31
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// checkBase64: (\s*([0-9a-zA-Z\+/=]){4}\s*)+ — groups of four base64
// characters, with padding only at the end.
func checkBase64(s string) string {
	n, pad := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isSpace(c):
			if n%4 != 0 {
				return "base64 text comes in groups of four characters (whitespace only between groups)"
			}
			continue
		case c == '=':
			pad++
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/':
			if pad > 0 {
				return "base64 padding '=' comes only at the end"
			}
		default:
			return "a base64Binary holds only base64 characters (A-Z, a-z, 0-9, +, /, =)"
		}
		n++
	}
	if n == 0 || n%4 != 0 || pad > 2 {
		return "base64 text comes in groups of four characters"
	}
	return ""
}

// activeTags are the HTML elements that run or load content. A string holding
// one of them is refused: clients show names, notes and descriptions in pages,
// and the narrative's allow-list (xhtml.go) keeps them out of the narrative too.
var activeTags = []string{"script", "iframe", "frame", "object", "embed", "applet", "svg", "math", "form", "link", "meta", "style", "base"}

// activeHTML returns the name of the first active HTML tag in s, or "".
func activeHTML(s string) string {
	for i := strings.IndexByte(s, '<'); i >= 0; {
		rest := s[i+1:]
		for _, tag := range activeTags {
			if len(rest) > len(tag) && strings.EqualFold(rest[:len(tag)], tag) {
				switch rest[len(tag)] {
				case ' ', '>', '/', '\t', '\n', '\r', '\f':
					return tag
				}
			}
		}
		j := strings.IndexByte(rest, '<')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return ""
}
