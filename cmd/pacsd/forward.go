package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
)

// routeSettings are the destinations pacsd forwards to besides the remote
// AEs, and the rules that choose where each instance goes (package route).
type routeSettings struct {
	RemoteWebs []string `name:"remote-web" aliases:"remote-webs" config:"remote_webs" placeholder:"NAME=URL" help:"a DICOMweb destination, NAME=URL of its DICOMweb root, sent to by STOW-RS; repeat for each"`
	Forward    []string `name:"forward" placeholder:"DEST" help:"send every stored instance at once to DEST, a remote AE or DICOMweb destination; repeat for each"`
	NodeID     string   `name:"node-id" placeholder:"NAME" help:"this node's name in the forwarding queue it shares with other nodes; the same across restarts (default HOSTNAME:DATA)"`
	// ForwardLease bounds how long a task stays with a node that stopped
	// renewing it, dead or cut off, before another takes it over.
	ForwardLease time.Duration `name:"forward-lease" default:"30s" placeholder:"DURATION" help:"how long a study being forwarded stays with a node that stops renewing it before another node takes it over"`

	Routes []route.Spec `kong:"-" config:"routes" help:"forwarding rules, a JSON list: [{\"name\": …, \"when\": {\"calling_ae\": …, \"Modality\": …}, \"to\": [DEST…], \"delay\": \"30s\", \"window\": \"19:00-07:00\", \"priority\": \"normal\", \"deidentify\": \"basic\"}]"`
	// Destinations holds the settings of each destination's sending.
	Destinations map[string]destinationSettings `kong:"-" config:"destinations" help:"how each destination is sent to, by name: {\"DEST\": {\"max_concurrency\": 2, \"max_mbps\": 0, \"max_attempts\": 0, \"backoff\": \"5s\", \"max_backoff\": \"10m\", \"max_batch_bytes\": 67108864, \"commit\": false, \"verify\": false, \"deidentify\": \"basic\", \"allow_burned_in\": false}}"`
	// RemoteWebTokens are secrets: no flag, and the environment's
	// PACSD_REMOTE_WEB_TOKEN_<NAME> wins over the file.
	RemoteWebTokens map[string]string `kong:"-" config:"remote_web_tokens" help:"bearer tokens of the DICOMweb destinations, by name; PACSD_REMOTE_WEB_TOKEN_<NAME> wins over it"`

	rules *route.Rules
	webs  map[string]string // name → URL
}

// destinationSettings say how one destination is sent to.
type destinationSettings struct {
	// MaxConcurrency is how many of its studies are sent at once.
	MaxConcurrency int `json:"max_concurrency"`
	// MaxMbps caps the rate at which it is sent data (0: no cap).
	MaxMbps float64 `json:"max_mbps"`
	// MaxAttempts is how many failed attempts make a study's task
	// failed (0: never give up).
	MaxAttempts int `json:"max_attempts"`
	// Backoff is the wait after a first failed attempt, doubling up to
	// MaxBackoff.
	Backoff    string `json:"backoff"`
	MaxBackoff string `json:"max_backoff"`
	// MaxBatchBytes bounds a STOW-RS request.
	MaxBatchBytes int64 `json:"max_batch_bytes"`
	// Commit asks a DIMSE destination for Storage Commitment; Verify
	// counts the study's instances there (C-FIND or QIDO-RS).
	Commit bool `json:"commit"`
	Verify bool `json:"verify"`
	// CommitTimeout bounds the wait for a commitment result.
	CommitTimeout string `json:"commit_timeout"`
	// Deidentify "basic" sends a remote AE de-identified copies only
	// (PS3.15 Annex E), under --deid-key; AllowBurnedIn lets instances
	// with burned-in annotation through, which are otherwise refused.
	Deidentify    string `json:"deidentify"`
	AllowBurnedIn bool   `json:"allow_burned_in"`
}

// complete checks the destinations and compiles the routes; remotes are
// the remote AEs, the other kind of destination.
func (r *routeSettings) complete(remotes map[string]remote) error {
	r.RemoteWebs, r.Forward = trimList(r.RemoteWebs), trimList(r.Forward)
	if r.ForwardLease < time.Second {
		return fmt.Errorf("forward_lease: %s is shorter than a second", r.ForwardLease)
	}
	r.webs = map[string]string{}
	for _, e := range r.RemoteWebs {
		name, u, ok := strings.Cut(e, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return fmt.Errorf("remote_webs: %q is not NAME=URL", e)
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("remote_webs: %s: the URL of its DICOMweb root must be http:// or https://", name)
		}
		if pu.User != nil {
			return fmt.Errorf("remote_webs: %s: credentials do not belong in the URL; give a bearer token in remote_web_tokens or PACSD_REMOTE_WEB_TOKEN_%s", name, envToken(name))
		}
		if _, dup := r.webs[name]; dup {
			return fmt.Errorf("remote_webs: %s configured twice", name)
		}
		if _, dup := remotes[name]; dup {
			return fmt.Errorf("remote_webs: %s is also a remote AE; a destination's name must say which it is", name)
		}
		r.webs[name] = u
	}
	known := func(d string) bool {
		_, ae := remotes[d]
		_, web := r.webs[d]
		return ae || web
	}
	for name, d := range r.Destinations {
		if !known(name) {
			return fmt.Errorf("destinations: %q is neither a remote AE nor a DICOMweb destination", name)
		}
		for _, v := range []string{d.Backoff, d.MaxBackoff, d.CommitTimeout} {
			if v == "" {
				continue
			}
			if dur, err := time.ParseDuration(v); err != nil || dur <= 0 {
				return fmt.Errorf("destinations: %s: %q is not a positive duration", name, v)
			}
		}
		if d.MaxConcurrency < 0 || d.MaxAttempts < 0 || d.MaxMbps < 0 || d.MaxBatchBytes < 0 {
			return fmt.Errorf("destinations: %s: a negative limit", name)
		}
		if d.Commit {
			if _, ae := remotes[name]; !ae {
				return fmt.Errorf("destinations: %s: commit is for DIMSE destinations; use verify", name)
			}
		}
	}
	for name := range r.RemoteWebTokens {
		if _, ok := r.webs[name]; !ok {
			return fmt.Errorf("remote_web_tokens: %q is no DICOMweb destination", name)
		}
	}
	rules, err := route.Compile(r.Routes, r.Forward, known, nil)
	if err != nil {
		return err
	}
	r.rules = rules
	return nil
}

// nodeID is the node's name in the queue: the setting, or the host's
// name and the data directory, which stay the same across restarts and
// differ between the nodes that share an index.
func (r *routeSettings) nodeID(data string) string {
	if r.NodeID != "" {
		return r.NodeID
	}
	host, _ := os.Hostname()
	if abs, err := filepath.Abs(data); err == nil {
		data = abs
	}
	return host + ":" + data
}

// envToken is the suffix of the environment variable that holds the
// token of DICOMweb destination name.
func envToken(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// token returns the bearer token of DICOMweb destination name.
func (r *routeSettings) token(name string, getenv func(string) string) string {
	if t := getenv("PACSD_REMOTE_WEB_TOKEN_" + envToken(name)); t != "" {
		return t
	}
	return r.RemoteWebTokens[name]
}

// destinationList describes the configured destinations for the API and
// pacsd queue, in name order.
func (r *routeSettings) destinationList(remotes map[string]remote) []api.Destination {
	var out []api.Destination
	for name, rm := range remotes {
		addr := rm.addr
		if rm.tls {
			addr = "tls://" + addr
		}
		out = append(out, api.Destination{Name: name, Kind: "dimse", Address: addr})
	}
	for name, u := range r.webs {
		out = append(out, api.Destination{Name: name, Kind: "dicomweb", Address: (&route.Web{URL: u}).Address()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// routing is what serve needs to forward.
type routing struct {
	rules        *route.Rules
	destinations []route.Destination
	commitments  *route.Commitments
}

// newRouting builds the senders of every destination.
func (r *routeSettings) newRouting(aeTitle string, remotes map[string]remote, objects routeObjects, codecs *codec.Registry, getenv func(string) string, log *slog.Logger) (*routing, error) {
	rt := &routing{rules: r.rules, commitments: &route.Commitments{Logger: log}}
	converting := codecObjects{routeObjects: objects, codecs: codecs}
	dur := func(s string) time.Duration {
		d, _ := time.ParseDuration(s) // checked by complete
		return d
	}
	for _, d := range r.destinationList(remotes) {
		ds := r.Destinations[d.Name]
		dlog := log.With("destination", d.Name)
		var sender route.Sender
		switch rm, ae := remotes[d.Name]; {
		case ae:
			s := &route.DIMSE{CallingAE: aeTitle, CalledAE: rm.ae, Addr: rm.addr, Datasets: converting, Convertible: codecs.CanTranscode,
				Limiter: route.NewLimiter(ds.MaxMbps), Commit: ds.Commit, Commitments: rt.commitments,
				CommitTimeout: dur(ds.CommitTimeout), Verify: ds.Verify && !ds.Commit, Logger: dlog}
			if rm.tls {
				s.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			sender = s
		default:
			sender = &route.Web{Name: d.Name, URL: r.webs[d.Name], Token: r.token(d.Name, getenv), Objects: objects,
				MaxBatchBytes: ds.MaxBatchBytes, Limiter: route.NewLimiter(ds.MaxMbps), Verify: ds.Verify, Logger: dlog}
		}
		rt.destinations = append(rt.destinations, route.Destination{Name: d.Name, Sender: sender, MaxConcurrency: ds.MaxConcurrency,
			MaxAttempts: ds.MaxAttempts, Backoff: dur(ds.Backoff), MaxBackoff: dur(ds.MaxBackoff)})
	}
	return rt, nil
}

// forwarder is the archive's Forwarder: the routes decide, from the
// instance's record, where it goes, and the router's workers are woken
// once it is recorded.
type forwarder struct {
	rules *route.Rules
	wake  func(destinations ...string)
}

func (f *forwarder) Forward(in *index.Instance, callingAE, calledAE, source string) []index.Forward {
	targets := f.rules.Match(&route.Facts{CallingAE: callingAE, CalledAE: calledAE, Source: source, Header: in.Header}, time.Now())
	out := make([]index.Forward, len(targets))
	for i, t := range targets {
		out[i] = index.Forward{Destination: t.Destination, Due: t.Due, Window: t.Window.String(), Priority: int(t.Priority)}
	}
	return out
}

func (f *forwarder) Queued(fs []index.Forward) {
	if f.wake == nil {
		return
	}
	names := make([]string, len(fs))
	for i, fw := range fs {
		names[i] = fw.Destination
	}
	f.wake(names...)
}
