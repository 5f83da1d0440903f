package server

import (
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"crs/fhir"
)

// warningHeader carries a successful write's warnings when the body is the
// resource (the default, return=representation) or empty (return=minimal):
// one header value per issue,
//
//	X-Warning: severity=warning; code=business-rule; expression="EpisodeOfCare.period"; diagnostics="…"
//
// With Prefer: return=OperationOutcome the issues are the body instead. In a
// batch or transaction reply each entry keeps them in response.outcome.
const warningHeader = "X-Warning"

// maxWarningHeaders bounds the header values one reply carries.
const maxWarningHeaders = 20

// setWarnings adds the warning header values for issues.
func setWarnings(c *gin.Context, issues []fhir.Issue) {
	for i, is := range issues {
		if i == maxWarningHeaders {
			c.Writer.Header().Add(warningHeader, "severity=information; code=informational; diagnostics="+
				strconv.Quote(strconv.Itoa(len(issues)-i)+" more issues: ask with Prefer: return=OperationOutcome"))
			return
		}
		v := "severity=" + string(is.Severity) + "; code=" + headerSafe(is.Code)
		if is.Expression != "" {
			v += "; expression=" + quoteHeader(is.Expression)
		}
		v += "; diagnostics=" + quoteHeader(is.Diagnostics)
		c.Writer.Header().Add(warningHeader, v)
	}
}

// quoteHeader quotes s for a header value: ASCII only, escapes as in Go
// strings, at most 500 bytes.
func quoteHeader(s string) string {
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return strconv.QuoteToASCII(s)
}

// headerSafe keeps a token to the characters a code may hold.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return -1
	}, s)
}
