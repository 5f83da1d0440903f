package main

import (
	"context"
	"fmt"
	"strings"

	"crs/fhir/engine"
	"crs/subscriptions"
)

// parseSubscriptionHosts reads --subscription-hosts: per organisation (ODS
// code), the endpoint hosts its subscriptions may deliver to, as
// ODS=host1,host2 with organisations separated by ';' or spaces.
func parseSubscriptionHosts(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ' ' }) {
		org, hosts, ok := strings.Cut(part, "=")
		if !ok || org == "" || hosts == "" {
			return nil, fmt.Errorf("--subscription-hosts: %q is not ODS=host1,host2", part)
		}
		for _, h := range strings.Split(hosts, ",") {
			if h == "" || strings.ContainsAny(h, "/:@") {
				return nil, fmt.Errorf("--subscription-hosts: %q is not a host name", h)
			}
			out[org] = append(out[org], strings.ToLower(h))
		}
	}
	return out, nil
}

// newSubscriptions makes the subscriptions' outbox and delivery loop:
// loopback endpoints are allowed in development mode (no OpenID provider).
func newSubscriptions(cfg Config) (*subscriptions.Manager, error) {
	hosts, err := parseSubscriptionHosts(cfg.SubscriptionHosts)
	if err != nil {
		return nil, err
	}
	return subscriptions.New(subscriptions.Config{Hosts: hosts, AllowLoopback: cfg.OIDCIssuer == "", Retention: cfg.SubscriptionRetention})
}

// recordEvents gives a writing command's engine (crs import) the
// subscriptions' outbox without delivery, so that what it writes records the
// events it causes; the server delivers them. It returns the engine made with
// cfg and the outbox.
func recordEvents(ctx context.Context, cfg engine.Config) (*engine.Engine, error) {
	subs, err := subscriptions.New(subscriptions.Config{})
	if err != nil {
		return nil, err
	}
	cfg.Outbox = subs
	eng := engine.New(cfg)
	if err := subs.Load(ctx, eng); err != nil {
		eng.Close()
		return nil, fmt.Errorf("load the subscriptions: %w", err)
	}
	return eng, nil
}
