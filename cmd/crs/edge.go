package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// checkEdge checks --trusted-proxies (addresses or CIDR ranges) and
// --cors-origins (scheme://host[:port], or *).
func checkEdge(cfg Config) error {
	for _, p := range splitList(cfg.TrustedProxies) {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return fmt.Errorf("--trusted-proxies: %q is not an IP address or CIDR range", p)
			}
		}
	}
	for _, o := range splitList(cfg.CORSOrigins) {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" {
			return fmt.Errorf("--cors-origins: %q is not an origin (scheme://host[:port])", o)
		}
	}
	return nil
}
