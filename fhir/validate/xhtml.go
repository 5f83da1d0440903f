package validate

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The narrative (Narrative.div) is XHTML restricted by txt-1 to the basic HTML
// formatting elements and attributes of HTML 4.0 chapters 7–11 and 15, <a> with
// name or href, images and inline styles; txt-2 asks for some non-whitespace
// content. Anything that can run (script, event attributes, iframes, objects,
// forms, javascript: URLs) is outside that list and refused.

const xhtmlNS = "http://www.w3.org/1999/xhtml"

// xhtmlElements are the elements txt-1 allows.
var xhtmlElements = set("p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong",
	"small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr", "address", "bdo", "kbd",
	"sub", "sup", "ul", "ol", "li", "dl", "dt", "dd", "pre", "table", "caption", "colgroup", "col", "thead", "tr",
	"tfoot", "tbody", "th", "td", "code", "samp", "img", "map", "area", "ins", "del", "u", "s", "strike", "font", "center")

// xhtmlAttributes are the attributes txt-1 allows on any of them.
var xhtmlAttributes = set("title", "style", "class", "id", "lang", "dir", "accesskey", "tabindex",
	"span", "width", "height", "align", "valign", "char", "charoff", "abbr", "axis", "headers", "scope", "rowspan",
	"colspan", "summary", "border", "frame", "rules", "cellspacing", "cellpadding", "bgcolor", "nowrap",
	"href", "name", "src", "alt", "cite", "datetime", "start", "type", "value", "compact", "shape", "coords",
	"nohref", "usemap", "hreflang", "rel", "rev", "charset", "longdesc", "ismap", "hspace", "vspace",
	"color", "face", "size", "noshade", "clear")

func set(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, s := range items {
		m[s] = true
	}
	return m
}

// xhtml checks a narrative div (txt-1, txt-2).
func (r *run) xhtml(s, p string) {
	if why := checkXHTML(s); why != "" {
		key := "txt-1"
		if why == errNoContent {
			key = "txt-2"
		}
		r.violated(key, p, why)
	}
}

const errNoContent = "the narrative has no text"

// checkXHTML returns why s is not an allowed narrative, or "". It is a small
// XML scanner of its own, made for this one job: the narrative of every
// resource written goes through it, and encoding/xml cost half of base
// validation. TestXHTMLAgreesWithEncodingXML and FuzzXHTML hold it to
// encoding/xml: what it accepts, encoding/xml parses as the same elements.
func checkXHTML(s string) string {
	if !utf8.ValidString(s) {
		return "the narrative is not valid UTF-8"
	}
	x := xscan{s: s}
	// An XML declaration may come first.
	if strings.HasPrefix(s, "<?xml") {
		end := strings.Index(s, "?>")
		if end < 0 || end < 6 || !isSpace(s[5]) {
			return "not well-formed XHTML: bad XML declaration"
		}
		if decl := strings.ToLower(s[:end]); strings.Contains(decl, "encoding") && !strings.Contains(decl, "utf-8") {
			return "the narrative is UTF-8"
		}
		x.i = end + 2
	}
	var stack []string
	content, roots := false, 0
	for x.i < len(s) {
		c := s[x.i]
		if c != '<' {
			start := x.i
			for x.i < len(s) && s[x.i] != '<' {
				if why := x.char(); why != "" {
					return why
				}
			}
			text := s[start:x.i]
			if strings.TrimSpace(text) != "" {
				if len(stack) == 0 {
					return "text outside the <div>"
				}
				content = true
			}
			continue
		}
		switch {
		case strings.HasPrefix(s[x.i:], "<!--"):
			end := strings.Index(s[x.i+4:], "-->")
			if end < 0 || strings.Contains(s[x.i+4:x.i+4+end], "--") {
				return "not well-formed XHTML: bad comment"
			}
			x.i += 4 + end + 3
		case strings.HasPrefix(s[x.i:], "<!"):
			// DOCTYPE, and CDATA sections too: an HTML page that shows the
			// narrative reads "<![CDATA[" as a comment ending at the first '>',
			// so what follows would be markup.
			return "<!" + "DOCTYPE, CDATA sections and other directives are not allowed in a narrative"
		case strings.HasPrefix(s[x.i:], "<?"):
			return "processing instructions are not allowed in a narrative"
		case strings.HasPrefix(s[x.i:], "</"):
			x.i += 2
			name := x.name()
			x.space()
			if x.i >= len(s) || s[x.i] != '>' {
				return "not well-formed XHTML: bad end tag"
			}
			x.i++
			if len(stack) == 0 || stack[len(stack)-1] != name {
				return "not well-formed XHTML: </" + name + "> does not close the open element"
			}
			stack = stack[:len(stack)-1]
		default:
			x.i++
			name := x.name()
			if name == "" {
				return "not well-formed XHTML: '<' that starts no tag"
			}
			if strings.Contains(name, ":") {
				return "element <" + name + "> is not XHTML"
			}
			if len(stack) == 0 {
				if roots++; roots > 1 {
					return "the narrative is one <div>, not several"
				}
				if name != "div" {
					return `the narrative must be one <div xmlns="http://www.w3.org/1999/xhtml">`
				}
			}
			if !xhtmlElements[name] {
				return "element <" + name + "> is not allowed in a narrative"
			}
			if name == "img" {
				content = true
			}
			hasNS := false
			var seen []string
			for {
				sp := x.space()
				if x.i >= len(s) {
					return "not well-formed XHTML: unterminated tag <" + name + ">"
				}
				if s[x.i] == '>' || strings.HasPrefix(s[x.i:], "/>") {
					break
				}
				if !sp {
					return "not well-formed XHTML: attributes of <" + name + "> need spaces between them"
				}
				an := x.name()
				if an == "" {
					return "not well-formed XHTML: bad attribute in <" + name + ">"
				}
				x.space()
				if x.i >= len(s) || s[x.i] != '=' {
					return "not well-formed XHTML: attribute " + an + " has no value"
				}
				x.i++
				x.space()
				val, why := x.quoted()
				if why != "" {
					return why
				}
				for _, prev := range seen {
					if prev == an {
						return "not well-formed XHTML: attribute " + an + " repeated"
					}
				}
				seen = append(seen, an)
				switch {
				case an == "xmlns":
					if val != xhtmlNS {
						return "the narrative is XHTML: xmlns must be " + xhtmlNS
					}
					hasNS = true
					continue
				case an == "xml:lang":
					continue
				case !xhtmlAttributes[an]:
					return "attribute " + an + " of <" + name + "> is not allowed in a narrative"
				}
				switch an {
				case "href", "src":
					v := strings.ToLower(strings.Join(strings.Fields(val), ""))
					if strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "vbscript:") || strings.HasPrefix(v, "data:text/html") {
						return an + " of <" + name + "> may not be a script URL"
					}
				case "style":
					v := strings.ToLower(strings.Join(strings.Fields(val), ""))
					if strings.Contains(v, "javascript:") || strings.Contains(v, "expression(") || strings.Contains(v, "behavior:") || strings.Contains(v, "-moz-binding") {
						return "the style of <" + name + "> may not run script"
					}
				}
			}
			if len(stack) == 0 && !hasNS {
				return `the narrative must be one <div xmlns="http://www.w3.org/1999/xhtml">`
			}
			if s[x.i] == '/' {
				x.i += 2 // an empty element
			} else {
				x.i++
				stack = append(stack, name)
			}
		}
	}
	if len(stack) > 0 {
		return "not well-formed XHTML: <" + stack[len(stack)-1] + "> is not closed"
	}
	if roots == 0 {
		return `the narrative must be one <div xmlns="http://www.w3.org/1999/xhtml">`
	}
	if !content {
		return errNoContent
	}
	return ""
}

// xscan is the position of checkXHTML in its input.
type xscan struct {
	s string
	i int
}

// name reads an XML name (letters, digits, '-', '_', '.', ':'; not starting
// with a digit, '-' or '.').
func (x *xscan) name() string {
	start := x.i
	for x.i < len(x.s) {
		c := x.s[x.i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' ||
			x.i > start && (c >= '0' && c <= '9' || c == '-' || c == '.') {
			x.i++
			continue
		}
		break
	}
	return x.s[start:x.i]
}

// space skips XML white space and reports whether there was any.
func (x *xscan) space() bool {
	start := x.i
	for x.i < len(x.s) && (x.s[x.i] == ' ' || x.s[x.i] == '\t' || x.s[x.i] == '\n' || x.s[x.i] == '\r') {
		x.i++
	}
	return x.i > start
}

// quoted reads a quoted attribute value and returns it with its references
// resolved enough to be checked (only &amp; and friends are kept as is).
func (x *xscan) quoted() (string, string) {
	if x.i >= len(x.s) || x.s[x.i] != '"' && x.s[x.i] != '\'' {
		return "", "not well-formed XHTML: attribute values are quoted"
	}
	q := x.s[x.i]
	x.i++
	start := x.i
	for x.i < len(x.s) && x.s[x.i] != q {
		if x.s[x.i] == '<' {
			return "", "not well-formed XHTML: '<' in an attribute value"
		}
		if why := x.char(); why != "" {
			return "", why
		}
	}
	if x.i >= len(x.s) {
		return "", "not well-formed XHTML: unterminated attribute value"
	}
	val := x.s[start:x.i]
	x.i++
	if strings.IndexByte(val, '&') >= 0 {
		val = xmlUnescape(val)
	}
	return val, ""
}

// char checks one character of text or of an attribute value at x.i and moves
// past it: an entity or character reference, or an XML character.
func (x *xscan) char() string {
	c := x.s[x.i]
	switch {
	case c == '&':
		end := strings.IndexByte(x.s[x.i:], ';')
		if end < 0 {
			return "not well-formed XHTML: '&' that starts no entity"
		}
		ref := x.s[x.i+1 : x.i+end]
		if _, ok := xmlEntity(ref); !ok {
			return "not well-formed XHTML: invalid character entity &" + ref + "; (only &amp; &lt; &gt; &quot; &apos; and numeric references)"
		}
		x.i += end + 1
	case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
		return "not well-formed XHTML: control character in the narrative"
	case c >= 0x80:
		r, size := utf8.DecodeRuneInString(x.s[x.i:])
		if r == utf8.RuneError && size <= 1 || !(r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000) {
			return "not well-formed XHTML: a character XML does not allow"
		}
		x.i += size
	default:
		x.i++
	}
	return ""
}

// xmlEntity resolves an entity or character reference (without & and ;).
func xmlEntity(ref string) (rune, bool) {
	switch ref {
	case "amp":
		return '&', true
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "quot":
		return '"', true
	case "apos":
		return '\'', true
	}
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	var n uint64
	var err error
	if ref[1] == 'x' {
		n, err = strconv.ParseUint(ref[2:], 16, 32)
	} else {
		n, err = strconv.ParseUint(ref[1:], 10, 32)
	}
	r := rune(n)
	if err != nil || !(r == 0x9 || r == 0xA || r == 0xD || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
		return 0, false
	}
	return r, true
}

// xmlUnescape resolves the references of an attribute value already checked.
func xmlUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '&' {
			end := strings.IndexByte(s[i:], ';')
			r, _ := xmlEntity(s[i+1 : i+end])
			b.WriteRune(r)
			i += end
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
