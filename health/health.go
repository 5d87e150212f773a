// Package health serves the probes an orchestrator asks a process that
// runs eventline components: GET /healthz (liveness) and GET /readyz
// (readiness), from the components' own Live and Ready.
//
// A relay.Relay and a consumers.Group are both Components:
//
//	var probes health.Probes
//	probes.Add("payments consumers", group)
//	mux.Handle("/", probes.Handler()) // or mux.Handle("GET /healthz", ...) and "GET /readyz"
//
// What the answers mean, for Kubernetes' probes:
//   - relay: live until its Run returns (an unreachable database or broker
//     is retried, not restarted); ready while it holds its database
//     session, as leader or as hot standby (eventline_relay_leader says
//     which one leads).
//   - consumer group: live while Run runs and each of its consumer loops
//     comes back from a poll within 2 minutes, or it is retrying a failing
//     call; ready once both of its consumers (source and retry) have
//     joined their Kafka groups.
//
// Each answer is 200 or 503 with one line per component ("name: ok" or
// "name: reason"); a Probes with no component is live and not ready.
package health

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Component is what a probe asks: Live says whether the process should be
// kept (a failure is worth a restart), Ready whether it should be counted
// as serving (a rolling update waits for it; a disruption budget counts
// it).
type Component interface {
	Live() error
	Ready() error
}

// Probes is a set of named components. The zero value has none; it is
// safe for concurrent use.
type Probes struct {
	mu    sync.Mutex
	comps map[string]Component
}

// Add registers (or replaces) the component under name.
func (p *Probes) Add(name string, c Component) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.comps == nil {
		p.comps = map[string]Component{}
	}
	p.comps[name] = c
}

// Handler serves GET /healthz and GET /readyz.
func (p *Probes) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		p.answer(w, Component.Live, true)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		p.answer(w, Component.Ready, false)
	})
	return mux
}

// Check runs ask on every component, in name order: whether all passed,
// and one line per component.
func (p *Probes) Check(ask func(Component) error) (ok bool, report string) {
	p.mu.Lock()
	comps := maps.Clone(p.comps)
	p.mu.Unlock()
	names := slices.Sorted(maps.Keys(comps))
	ok = true
	var b strings.Builder
	for _, n := range names {
		if err := ask(comps[n]); err != nil {
			ok = false
			fmt.Fprintf(&b, "%s: %s\n", n, strings.ReplaceAll(err.Error(), "\n", "; "))
		} else {
			fmt.Fprintf(&b, "%s: ok\n", n)
		}
	}
	return ok, b.String()
}

// answer writes ask's verdict; with no component, empty says how to
// answer (live: yes; ready: not yet).
func (p *Probes) answer(w http.ResponseWriter, ask func(Component) error, empty bool) {
	ok, report := p.Check(ask)
	if report == "" {
		ok, report = empty, "no component registered yet\n"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(report))
}
