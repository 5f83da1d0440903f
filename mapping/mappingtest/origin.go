package mappingtest

import (
	"net/url"
	"strings"
	"testing"
)

// Origin checks that where the stored resource rt/id came from can be
// found, as an import records it: exactly one Provenance targets it, naming
// the file (its source entity) and the importing organisation org
// (Organization/…), and the resource's meta.source names the file and the
// lines given (for example "12", or "3,7" for several rows); a _source search
// finds the resource by it. It returns the Provenance.
func (e *Env) Origin(t testing.TB, rt, id, org, file, lines string) map[string]any {
	t.Helper()
	got := e.Search(t, rt, "_id="+url.QueryEscape(id))
	if len(got) != 1 {
		t.Fatalf("%s/%s: found %d", rt, id, len(got))
	}
	meta, _ := got[0]["meta"].(map[string]any)
	source, _ := meta["source"].(string)
	if want := "/" + url.PathEscape(file) + "#line=" + lines; !strings.HasSuffix(source, want) || !strings.Contains(source, "/Id/import-source/") {
		t.Fatalf("%s/%s: meta.source %q, want …/Id/import-source/<source>%s", rt, id, source, want)
	}
	found := false
	for _, r := range e.Search(t, rt, "_source="+url.QueryEscape(strings.ReplaceAll(source, ",", `\,`))) {
		found = found || r["id"] == id
	}
	if !found {
		t.Fatalf("%s?_source=%s does not find %s/%s", rt, source, rt, id)
	}
	prov := e.Search(t, "Provenance", "target="+rt+"/"+id)
	if len(prov) != 1 {
		t.Fatalf("%s/%s: %d Provenances, want 1: %s", rt, id, len(prov), JSON(prov))
	}
	s := JSON(prov[0])
	if !strings.Contains(s, `"value":"`+file+`"`) || !strings.Contains(s, `"reference":"Organization/`+org+`"`) {
		t.Fatalf("%s/%s: the Provenance names neither the file %s nor Organization/%s: %s", rt, id, file, org, s)
	}
	return prov[0]
}
