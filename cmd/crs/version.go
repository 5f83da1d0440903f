package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// commit is the source revision, set at build time by the Makefile
// (-ldflags "-X main.commit=…"); when empty, the Go toolchain's VCS stamp is used.
var commit string

// buildCommit returns the commit crs was built from, or "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return rev + dirty
		}
	}
	return "unknown"
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "crs %s (commit %s)\n", version, buildCommit())
}
