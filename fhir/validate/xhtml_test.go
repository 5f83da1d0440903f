package validate

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

var xhtmlSamples = []string{
	`<div xmlns="http://www.w3.org/1999/xhtml">x</div>`,
	`<?xml version="1.0"?><div xmlns="http://www.w3.org/1999/xhtml"><p class='a'>x &amp; &#169; &#x41;</p><br/><img src="x" alt=""/></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><!-- c --><table border="1"><tr><td colspan="2">z</td></tr></table></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en"><a href="http://x">y</a></div>`,
	` <div xmlns="http://www.w3.org/1999/xhtml">x</div> `,
	`<div xmlns="http://www.w3.org/1999/xhtml">x<script>y</script></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x">y</p></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><p>x</div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml">x</div><div xmlns="http://www.w3.org/1999/xhtml">y</div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml">&reg;</div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml">a & b</div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><p a=b>x</p></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><p title="a" title="b">x</p></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><![CDATA[<script>x</script>]]></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><svg:svg xmlns:svg="http://www.w3.org/2000/svg"/>x</div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><p style="background:url(javascript:x)">x</p></div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml">x</p>`,
	`<div xmlns="http://www.w3.org/1999/xhtml">x`,
	`<div>x</div>`, `<p xmlns="http://www.w3.org/1999/xhtml">x</p>`, `x`, ``, `<div xmlns="http://www.w3.org/1999/xhtml"/>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><!DOCTYPE x>x</div>`, `<div xmlns="http://www.w3.org/1999/xhtml"><?php x?>x</div>`,
	"<div xmlns=\"http://www.w3.org/1999/xhtml\">a\x01b</div>", `<div xmlns="http://www.w3.org/1999/xhtml">&#0;</div>`,
	`<div xmlns="http://www.w3.org/1999/xhtml"><p title="<">x</p></div>`, `<div xmlns="http://www.w3.org/1999/xhtml"><1p>x</1p></div>`,
}

// TestXHTMLAgreesWithEncodingXML: whatever checkXHTML accepts, the same rules
// applied over encoding/xml accept too (the scanner is never looser than a
// real XML parser); the first five samples are valid and both accept them.
// The scanner is stricter on purpose: repeated attributes, CDATA sections and
// script in style attributes.
func TestXHTMLAgreesWithEncodingXML(t *testing.T) {
	for i, s := range xhtmlSamples {
		ours, std := checkXHTML(s), checkXHTMLStdlib(s)
		if ours == "" && std != "" {
			t.Errorf("%q: scanner accepts, encoding/xml %q", s, std)
		}
		if i < 5 && (ours != "" || std != "") {
			t.Errorf("%q: valid, but scanner %q, encoding/xml %q", s, ours, std)
		}
	}
}

func FuzzXHTML(f *testing.F) {
	for _, s := range xhtmlSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkXHTML(s) == "" {
			if std := checkXHTMLStdlib(s); std != "" {
				t.Fatalf("%q accepted by the scanner, refused over encoding/xml: %s", s, std)
			}
		}
	})
}

// checkXHTMLStdlib is the narrative check over encoding/xml, the reference
// for checkXHTML.
func checkXHTMLStdlib(s string) string {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	var stack []string
	content, roots := false, 0
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "not well-formed: " + err.Error()
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != "" {
				return "prefixed element"
			}
			if len(stack) == 0 {
				if roots++; roots > 1 {
					return "several roots"
				}
				ns := ""
				for _, a := range t.Attr {
					if a.Name.Space == "" && a.Name.Local == "xmlns" {
						ns = a.Value
					}
				}
				if t.Name.Local != "div" || ns != xhtmlNS {
					return "root"
				}
			}
			if !xhtmlElements[t.Name.Local] {
				return "element"
			}
			if t.Name.Local == "img" {
				content = true
			}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					if a.Value != xhtmlNS {
						return "xmlns"
					}
				case a.Name.Space == "xml" && a.Name.Local == "lang":
				case a.Name.Space != "" || !xhtmlAttributes[a.Name.Local]:
					return "attribute"
				}
			}
			stack = append(stack, t.Name.Local)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1] != t.Name.Local || t.Name.Space != "" {
				return "end tag"
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				if len(stack) == 0 {
					return "text outside"
				}
				content = true
			}
		case xml.ProcInst:
			if len(stack) > 0 || t.Target != "xml" {
				return "processing instruction"
			}
		case xml.Directive:
			return "directive"
		}
	}
	if len(stack) > 0 || roots == 0 {
		return "not closed"
	}
	if !content {
		return "no content"
	}
	return ""
}
