package validate

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
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

// checkXHTML returns why s is not an allowed narrative, or "".
func checkXHTML(s string) string {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	d.Entity = nil // only XML's own entities: &reg; and friends are not XHTML of FHIR
	var stack []string
	content, roots := false, 0
	for {
		// RawToken skips namespace translation (the costly part of Token); the
		// stack below does the matching of end tags it leaves out, and names
		// with a prefix are refused, so the namespace is the div's xmlns.
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "not well-formed XHTML: " + err.Error()
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != "" {
				return "element <" + t.Name.Space + ":" + t.Name.Local + "> is not XHTML"
			}
			if len(stack) == 0 {
				if roots++; roots > 1 {
					return "the narrative is one <div>, not several"
				}
				if t.Name.Local != "div" || attr(t.Attr, "", "xmlns") != xhtmlNS {
					return `the narrative must be one <div xmlns="http://www.w3.org/1999/xhtml">`
				}
			}
			if !xhtmlElements[t.Name.Local] {
				return "element <" + t.Name.Local + "> is not allowed in a narrative"
			}
			if t.Name.Local == "img" {
				content = true
			}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					if a.Value != xhtmlNS {
						return "the narrative is XHTML: xmlns must be " + xhtmlNS
					}
					continue
				case a.Name.Space == "xml" && a.Name.Local == "lang":
					continue
				case a.Name.Space != "" || !xhtmlAttributes[a.Name.Local]:
					name := a.Name.Local
					if a.Name.Space != "" {
						name = a.Name.Space + ":" + name
					}
					return "attribute " + name + " of <" + t.Name.Local + "> is not allowed in a narrative"
				}
				if a.Name.Local == "href" || a.Name.Local == "src" {
					v := strings.ToLower(strings.Join(strings.Fields(a.Value), ""))
					if strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "vbscript:") || strings.HasPrefix(v, "data:text/html") {
						return a.Name.Local + " of <" + t.Name.Local + "> may not be a script URL"
					}
				}
			}
			stack = append(stack, t.Name.Local)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1] != t.Name.Local || t.Name.Space != "" {
				return "not well-formed XHTML: </" + t.Name.Local + "> does not close the open element"
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if strings.TrimSpace(string(t)) != "" {
					return "text outside the <div>"
				}
				continue
			}
			if !content && strings.TrimSpace(string(t)) != "" {
				content = true
			}
		case xml.ProcInst:
			if len(stack) > 0 || t.Target != "xml" {
				return "processing instructions are not allowed in a narrative"
			}
		case xml.Directive:
			return "<!" + "DOCTYPE and other directives are not allowed in a narrative"
		}
	}
	if len(stack) > 0 {
		return "not well-formed XHTML: <" + stack[len(stack)-1] + "> is not closed"
	}
	if !content {
		return errNoContent
	}
	return ""
}

func attr(attrs []xml.Attr, space, local string) string {
	for _, a := range attrs {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}
