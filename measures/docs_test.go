package measures

import (
	"os"
	"strings"
	"testing"
)

// TestDocsDefineEveryMeasure: docs/measures.md names every Measure and group.
func TestDocsDefineEveryMeasure(t *testing.T) {
	doc, err := os.ReadFile("../docs/measures.md")
	if err != nil {
		t.Fatal(err)
	}
	defs, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range defs {
		id := str(m["id"])
		if !strings.Contains(string(doc), "`"+id+"`") {
			t.Errorf("docs/measures.md does not define %s", id)
		}
		if len(arr(m["group"])) > 1 {
			for _, g := range arr(m["group"]) {
				if gid := str(mapOf(g)["id"]); !strings.Contains(string(doc), "`"+gid+"`") {
					t.Errorf("docs/measures.md does not define %s group %s", id, gid)
				}
			}
		}
	}
}
