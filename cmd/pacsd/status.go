package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pacsd/pacsd/api"
)

// statusCommand asks a running pacsd serve, over its HTTP port, how it is:
// readiness, associations, the forwarding queue, migrations, storage and
// index. With --http-auth on, the token comes from PACSD_TOKEN (never a
// flag, which other users of the host could read).
type statusCommand struct {
	baseSettings
	HTTPAddr string `name:"http-addr" default:"127.0.0.1:8042" placeholder:"HOST:PORT" help:"the HTTP address of the pacsd to ask (a wildcard host means this host)"`
	JSON     bool   `config:"-" help:"print the answers as one JSON object"`
}

// statusTimeout bounds each request of pacsd status.
const statusTimeout = 10 * time.Second

// errNotReady is pacsd status's error when the server answers that it
// is not ready, so that it exits 1.
var errNotReady = errors.New("pacsd is not ready")

func (c *statusCommand) Run(ctx context.Context, p *process) error {
	host, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http_addr: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s := &statusClient{base: "http://" + net.JoinHostPort(host, port), token: p.getenv("PACSD_TOKEN"),
		client: &http.Client{Timeout: statusTimeout}}
	var out struct {
		Ready      json.RawMessage  `json:"ready"`
		System     *api.System      `json:"system"`
		Queue      *api.QueueReport `json:"queue"`
		Migrations json.RawMessage  `json:"migrations,omitempty"`
	}
	readyStatus, err := s.get(ctx, "/readyz", &out.Ready)
	if err != nil {
		return err
	}
	if _, err := s.get(ctx, "/api/system", &out.System); err != nil {
		return err
	}
	if _, err := s.get(ctx, "/api/queue", &out.Queue); err != nil {
		return err
	}
	// Migrations are there when the server runs them.
	if st, err := s.get(ctx, "/api/migrations", &out.Migrations); err != nil && st != http.StatusNotFound {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(p.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printStatus(p.stdout, out.Ready, out.System, out.Queue, out.Migrations)
	}
	if readyStatus != http.StatusOK {
		return errNotReady
	}
	return nil
}

type statusClient struct {
	base, token string
	client      *http.Client
}

// get reads the JSON answer of path into v. An answer other than 200 is
// an error, but for /readyz, whose 503 carries the reasons.
func (s *statusClient) get(ctx context.Context, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ask pacsd: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK && !(path == "/readyz" && resp.StatusCode == http.StatusServiceUnavailable) {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = " (set PACSD_TOKEN to a token with the read scope)"
		}
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s%s", path, resp.Status, e.Error, hint)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, nil
}

// printStatus writes the state of a server for a person to read.
func printStatus(w io.Writer, ready json.RawMessage, sys *api.System, q *api.QueueReport, migrations json.RawMessage) {
	var r struct {
		Status string `json:"status"`
		Checks map[string]struct {
			Status, Detail, Error string
		} `json:"checks"`
	}
	json.Unmarshal(ready, &r)
	fmt.Fprintf(w, "pacsd %s, %s, up %s\n", sys.Version, r.Status, time.Duration(sys.UptimeSeconds)*time.Second)
	for _, name := range []string{"storage", "index", "spool"} {
		if ch, ok := r.Checks[name]; ok {
			fmt.Fprintf(w, "  %-8s %s %s%s\n", name, ch.Status, ch.Detail, ch.Error)
		}
	}
	fmt.Fprintf(w, "AE title %s, DIMSE %s, HTTP %s\n", sys.AETitle, sys.DIMSEAddr, sys.HTTPAddr)
	most := "no limit"
	if sys.Associations.Max > 0 {
		most = fmt.Sprint(sys.Associations.Max)
	}
	fmt.Fprintf(w, "associations: %d open (most %s)\n", sys.Associations.Active, most)
	fmt.Fprintf(w, "storage: %s %s", sys.Storage.Kind, sys.Storage.Location)
	if sys.Storage.FreeBytes != nil {
		fmt.Fprintf(w, ", %d bytes free", *sys.Storage.FreeBytes)
	}
	fmt.Fprintln(w)
	n := sys.Index.Counts
	fmt.Fprintf(w, "index: %s %s: %d patients, %d studies, %d series, %d instances\n",
		sys.Index.Kind, sys.Index.Location, n.Patients, n.Studies, n.Series, n.Instances)
	if sys.Spool != nil {
		fmt.Fprintf(w, "spool: %d objects, %d bytes not yet in S3\n", sys.Spool.Objects, sys.Spool.Bytes)
	}
	if cs := sys.Compression; cs != nil {
		fmt.Fprintf(w, "compression: %s after %s: %d instances, %d bytes saved (%d to %d), %d left uncompressed\n", cs.Syntax,
			time.Duration(cs.AfterSeconds)*time.Second, cs.Instances, cs.SavedBytes, cs.OriginalBytes, cs.StoredBytes, cs.Skipped)
	}
	if len(q.Destinations) == 0 {
		fmt.Fprintln(w, "queue: no destinations")
	}
	for _, d := range q.Destinations {
		fmt.Fprintf(w, "queue %s: pending=%d in_flight=%d failed=%d oldest=%s\n", d.Name, d.Pending, d.InFlight, d.Failed,
			time.Duration(d.OldestPendingSeconds*float64(time.Second)).Round(time.Second))
	}
	var ms struct {
		Migrations []struct {
			ID, Source, State string
			Studies           map[string]int
			ETASeconds        float64 `json:"eta_seconds"`
		}
	}
	json.Unmarshal(migrations, &ms)
	for _, m := range ms.Migrations {
		fmt.Fprintf(w, "migration %s from %s: %s, %d of %d studies done, %d failed, %d conflicts, ETA %s\n", m.ID, m.Source, m.State,
			m.Studies["done"]+m.Studies["verified"], m.Studies["total"], m.Studies["failed"], m.Studies["conflict"],
			(time.Duration(m.ETASeconds) * time.Second).String())
	}
}
