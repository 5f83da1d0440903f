package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCLIHelpAndVersion: asking for help or the version is an answer on stdout
// and a success, not an error.
func TestCLIHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--help"}, []string{"Usage: crs serve", "-addr", "-store", "-trusted-proxies", "-cors-origins"}},
		{[]string{"serve", "-h"}, []string{"Usage: crs serve"}},
		{[]string{"--help"}, []string{"crs serve", "crs backup", "crs version"}},
		{[]string{"--version"}, []string{"crs " + version, "(commit "}},
		{[]string{"version"}, []string{"crs " + version, "(commit "}},
	} {
		var out, errOut bytes.Buffer
		if err := run(tc.args, &out, &errOut); err != nil {
			t.Errorf("crs %s: %v (want success)", strings.Join(tc.args, " "), err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("crs %s: stdout lacks %q:\n%s", strings.Join(tc.args, " "), w, out.String())
			}
		}
	}
	commit = "0123456789ab"
	defer func() { commit = "" }()
	var out bytes.Buffer
	if err := run([]string{"version"}, &out, &out); err != nil || !strings.Contains(out.String(), "commit 0123456789ab") {
		t.Errorf("crs version with a build commit: %v %q", err, out.String())
	}
}
