package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// The security measurements (-skip-security):
//
//   - DICOM TLS: the series of the C-STORE measurement is sent by
//     storescu to a fresh pacsd, once over plain TCP and once over TLS
//     (storescu +tls, OpenSSL, with a client certificate that pacsd
//     requires), the two alternating in order from round to round; the
//     same pacsd configuration serves both, so only the transport
//     differs. Instances/s of TLS against plain TCP.
//   - OIDC on QIDO-RS: two pacsd, one with --http-auth none, one with
//     --http-auth oidc against Ory Hydra (JWT access tokens, RS256), hold
//     the same few instances; the same study search is sent to each in
//     turn, with a bearer token to the second, over keep-alive
//     connections. The provider's keys are cached after pacsd starts, and
//     pacsd caches a token it has verified, so the difference of the
//     medians is what a viewer's requests pay for authentication. Beside
//     it, the full verification of a token seen for the first time
//     (signature, claims), timed in this process with package auth on
//     fresh tokens of the same provider.
//   - Audit trail on C-STORE: the same series is sent by storescu over
//     plain TCP to a fresh pacsd with the audit trail (the default: a
//     hash-chained journal, its head in the index) and to one with
//     --audit-off, alternating in order from round to round. What each
//     request notes for the trail is gathered either way; the difference
//     is the messages built, hashed, written and synced. C-STORE time
//     with the trail against without.
const (
	targetTLSVsPlain    = 0.8                    // TLS C-STORE instances/s ≥ 0.8 × plain TCP's
	targetOIDCOverhead  = 200 * time.Microsecond // QIDO-RS p50 with OIDC ≤ p50 without + 0.2 ms
	targetAuditOverhead = 0.05                   // C-STORE time with the audit trail ≤ 1.05 × without
	securityQidoStudies = 10                     // instances stored for the QIDO-RS comparison
)

// securityResult is what the security measurements found.
type securityResult struct {
	stores       []runResult // peer "plain" or "tls"
	audits       []runResult // peer "audit" or "audit-off"
	qido         map[string][]float64
	qidoReps     int
	qidoQuery    string
	firstUse     []float64 // ms of verifying a token seen for the first time
	tlsArgs      string
	hydraVersion string
}

// measureSecurity runs the security measurements with the pacsd at bin
// and the series in corpus (files).
func measureSecurity(ctx context.Context, o options, bin, tmp, corpus string, files []dcmgen.File, logf func(string, ...any)) (*securityResult, error) {
	dir := filepath.Join(tmp, "security")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ca, err := testpeer.NewCA(dir, "bench-ca")
	if err != nil {
		return nil, err
	}
	server, err := ca.Issue(dir, "pacsd.bench")
	if err != nil {
		return nil, err
	}
	client, err := ca.Issue(dir, "storescu.bench")
	if err != nil {
		return nil, err
	}
	res := &securityResult{qido: map[string][]float64{}}
	tlsArgs := []string{"+tls", client.KeyFile, client.CertFile, "+cf", ca.File}
	res.tlsArgs = strings.Join([]string{"+tls", "<key>", "<certificate>", "+cf", "<CA>"}, " ")
	kinds := []string{"plain", "tls"}
	for round := range o.rounds {
		for slot := range kinds {
			kind := kinds[(round+slot)%len(kinds)]
			r, err := storeTLS(ctx, bin, filepath.Join(dir, fmt.Sprintf("%s-%d", kind, round+1)), corpus, o.instances, server, ca, kind == "tls", tlsArgs)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, kind, err)
			}
			logf("security round %d/%d  %-5s %7.3f s  %7.1f instances/s", round+1, o.rounds, kind, r.wall.Seconds(), perSecond(o.instances, r.wall))
			res.stores = append(res.stores, runResult{round: round + 1, slot: slot + 1, peer: kind, sendResult: r})
		}
	}
	kinds = []string{"audit", "audit-off"}
	for round := range o.rounds {
		for slot := range kinds {
			kind := kinds[(round+slot)%len(kinds)]
			var flags []string
			if kind == "audit-off" {
				flags = []string{"--audit-off"}
			}
			r, err := storeFresh(ctx, bin, filepath.Join(dir, fmt.Sprintf("%s-%d", kind, round+1)), corpus, o.instances, flags)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, kind, err)
			}
			logf("security round %d/%d  %-9s %7.3f s  %7.1f instances/s", round+1, o.rounds, kind, r.wall.Seconds(), perSecond(o.instances, r.wall))
			res.audits = append(res.audits, runResult{round: round + 1, slot: slot + 1, peer: kind, sendResult: r})
		}
	}
	if err := res.measureOIDC(ctx, o, bin, dir, files, logf); err != nil {
		return nil, fmt.Errorf("QIDO-RS with OIDC: %w", err)
	}
	return res, nil
}

// storeTLS starts a fresh pacsd in dir listening on both DIMSE ports, and
// sends it the series with storescu over TLS or plain TCP.
func storeTLS(ctx context.Context, bin, dir, corpus string, n int, server testpeer.Issued, ca *testpeer.CA, overTLS bool, tlsArgs []string) (res sendResult, err error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return res, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	port, err := testpeer.FreePort()
	if err != nil {
		return res, err
	}
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s, err := startPacsdWith(ctx, bin, dir, nil, []string{"--dimse-tls-addr", tlsAddr,
		"--tls-cert", server.CertFile, "--tls-key", server.KeyFile, "--tls-client-ca", ca.File}, nil)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	if err := testpeer.WaitTCP(ctx, tlsAddr); err != nil {
		return res, err
	}
	target := *s
	extra := []string{"+sd"}
	if overTLS {
		target.port, extra = port, append(extra, tlsArgs...)
	}
	return sendCounted(ctx, s, &target, extra, corpus, n)
}

// storeFresh starts a fresh pacsd in dir with flags and sends it the
// series with storescu over plain TCP.
func storeFresh(ctx context.Context, bin, dir, corpus string, n int, flags []string) (res sendResult, err error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return res, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	s, err := startPacsdWith(ctx, bin, dir, nil, flags, nil)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	return sendCounted(ctx, s, s, []string{"+sd"}, corpus, n)
}

// sendCounted sends the series of n instances in corpus with storescu to
// target (s, or s on another port) and checks that s then holds them
// all.
func sendCounted(ctx context.Context, s, target *server, extra []string, corpus string, n int) (sendResult, error) {
	syscall.Sync()
	res, err := sendWith(ctx, target, extra, corpus)
	if err != nil {
		return res, err
	}
	got, err := s.stored(ctx)
	if err != nil {
		return res, fmt.Errorf("counting stored instances: %w", err)
	}
	if got != n {
		return res, fmt.Errorf("pacsd holds %d of %d instances after storescu; see %s", got, n, s.log)
	}
	return res, nil
}

// measureOIDC times the same QIDO-RS search on a pacsd without
// authentication and on one checking Hydra's tokens.
func (res *securityResult) measureOIDC(ctx context.Context, o options, bin, dir string, files []dcmgen.File, logf func(string, ...any)) (err error) {
	logf("starting Ory Hydra")
	hydraDir := filepath.Join(dir, "hydra")
	if err := os.Mkdir(hydraDir, 0o755); err != nil {
		return err
	}
	h, err := testpeer.StartHydra(ctx, testpeer.HydraOptions{Dir: hydraDir})
	if err != nil {
		return err
	}
	defer h.Stop()
	res.hydraVersion = firstLine(commandOutput(ctx, testpeer.HydraCommand, "version"))
	bench := testpeer.HydraClient{ID: "bench", Secret: "bench-secret-0123456789", Scopes: []string{"read"}, Audience: []string{"pacsd"}}
	if err := h.CreateClient(ctx, bench); err != nil {
		return err
	}
	// Hydra makes its signing key on the first token request, which on
	// a busy machine can outlast its own write timeout.
	var token string
	for attempt := 1; ; attempt++ {
		if token, err = h.Token(ctx, bench, []string{"read"}, "pacsd"); err == nil || attempt == 5 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if err != nil {
		return err
	}
	some := files[:min(securityQidoStudies, len(files))]
	var paths []string
	for _, f := range some {
		paths = append(paths, f.Path)
	}
	type target struct {
		name, token string
		s           *server
	}
	var targets []target
	for _, mode := range []struct{ name, token string }{{"none", ""}, {"oidc", token}} {
		var flags []string
		if mode.token != "" {
			flags = []string{"--http-auth", "oidc", "--oidc-issuer", h.Issuer, "--oidc-audience", "pacsd"}
		}
		d := filepath.Join(dir, "qido-"+mode.name)
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		s, err := startPacsdWith(ctx, bin, d, nil, flags, nil)
		if err != nil {
			return err
		}
		defer s.stop()
		if _, err := send(ctx, s, false, paths...); err != nil {
			return err
		}
		targets = append(targets, target{mode.name, mode.token, s})
	}
	res.qidoQuery = "/studies?StudyInstanceUID=" + files[0].StudyInstanceUID
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer client.CloseIdleConnections()
	res.qidoReps = o.webReps * 5
	logf("QIDO-RS with and without OIDC: %d searches each", res.qidoReps)
	for rep := range res.qidoReps + 10 { // the first 10 warm up
		for i := range targets {
			t := targets[(i+rep)%len(targets)]
			d, err := timedSearch(ctx, client, t.s.web+res.qidoQuery, t.token)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if rep >= 10 {
				res.qido[t.name] = append(res.qido[t.name], d.Seconds()*1000)
			}
		}
	}
	// A token seen for the first time is verified in full.
	o2, err := auth.NewOIDC(ctx, auth.OIDCConfig{Issuer: h.Issuer, Audience: "pacsd"})
	if err != nil {
		return err
	}
	for range 50 {
		tok, err := h.Token(ctx, bench, []string{"read"}, "pacsd")
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := o2.Authenticate(ctx, tok); err != nil {
			return err
		}
		res.firstUse = append(res.firstUse, time.Since(start).Seconds()*1000)
	}
	slices.Sort(res.firstUse)
	// Without a token, the authenticated pacsd refuses.
	if _, err := timedSearch(ctx, client, targets[1].s.web+res.qidoQuery, ""); err == nil || !strings.Contains(err.Error(), "401") {
		return fmt.Errorf("pacsd with --http-auth oidc answered a search without a token: %v", err)
	}
	return nil
}

// timedSearch sends one QIDO-RS search and reads the answer, which must
// hold one study.
func timedSearch(ctx context.Context, c *http.Client, url, token string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", acceptJSON)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK || bytes.Count(body, []byte(`"0020000D"`)) != 1 {
		return 0, fmt.Errorf("status %d, want 200 with one study: %.200s", resp.StatusCode, body)
	}
	return d, nil
}

// commandOutput returns what a command prints, or "" if it fails.
func commandOutput(ctx context.Context, name string, args ...string) string {
	stdout, stderr, err := testpeer.Run(ctx, name, args...)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(stdout + stderr)
}

// printSecurity prints the security measurements.
func (r *report) printSecurity(w io.Writer) {
	res := r.security
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	if res == nil {
		p("Security: not measured (-skip-security)")
		p("")
		return
	}
	o := r.opts
	p("DICOM TLS: C-STORE of the series over TLS beside plain TCP, into the same pacsd configuration")
	p("sender    storescu %s -aec PACSD +sd [%s] <series>; pacsd requires and verifies the client certificate", strings.Join(storescuArgs, " "), res.tlsArgs)
	p("          (--tls-client-ca); certificates RSA 2048; rounds %d, order alternating, every run a fresh pacsd", o.rounds)
	rate := map[string][]float64{}
	cpu := map[string][]float64{}
	for _, run := range res.stores {
		rate[run.peer] = append(rate[run.peer], perSecond(o.instances, run.wall))
		cpu[run.peer] = append(cpu[run.peer], run.peerCPU.Seconds()/float64(o.instances)*1000)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tinstances/s\tmin\tmax\tpeer CPU ms/instance\t")
	for _, k := range []string{"plain", "tls"} {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.2f\t\n", k, median(rate[k]), slices.Min(rate[k]), slices.Max(rate[k]), median(cpu[k]))
	}
	tw.Flush()
	ratio := median(rate["tls"]) / median(rate["plain"])
	p("TLS / plain TCP: %.2f (target ≥ %.1f) %s", ratio, targetTLSVsPlain, targetMet(ratio >= targetTLSVsPlain))
	p("")

	p("Audit trail: C-STORE of the series over plain TCP into pacsd with the audit trail (default) and with --audit-off")
	p("sender    storescu %s -aec PACSD +sd <series>; rounds %d, order alternating, every run a fresh pacsd", strings.Join(storescuArgs, " "), o.rounds)
	wall := map[string][]float64{}
	rate, cpu = map[string][]float64{}, map[string][]float64{}
	for _, run := range res.audits {
		wall[run.peer] = append(wall[run.peer], run.wall.Seconds())
		rate[run.peer] = append(rate[run.peer], perSecond(o.instances, run.wall))
		cpu[run.peer] = append(cpu[run.peer], run.peerCPU.Seconds()/float64(o.instances)*1000)
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pacsd\tC-STORE s\tinstances/s\tmin\tmax\tpeer CPU ms/instance\t")
	for _, k := range []string{"audit", "audit-off"} {
		fmt.Fprintf(tw, "%s\t%.3f\t%.1f\t%.1f\t%.1f\t%.2f\t\n", k, median(wall[k]), median(rate[k]), slices.Min(rate[k]), slices.Max(rate[k]), median(cpu[k]))
	}
	tw.Flush()
	added := median(wall["audit"])/median(wall["audit-off"]) - 1
	p("time added by the audit trail: %+.1f%% (target ≤ %.0f%%) %s", added*100, targetAuditOverhead*100, targetMet(added <= targetAuditOverhead))
	p("")

	none, oidc := slices.Sorted(slices.Values(res.qido["none"])), slices.Sorted(slices.Values(res.qido["oidc"]))
	p("QIDO-RS with OIDC bearer token validation beside none: GET %s, %d times each, alternating,", res.qidoQuery, res.qidoReps)
	p("          keep-alive connections; tokens from Ory Hydra (%s), RS256, keys cached by pacsd", res.hydraVersion)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "--http-auth\tp50 ms\tp99 ms\t")
	fmt.Fprintf(tw, "none\t%.3f\t%.3f\t\n", percentile(none, 50), percentile(none, 99))
	fmt.Fprintf(tw, "oidc\t%.3f\t%.3f\t\n", percentile(oidc, 50), percentile(oidc, 99))
	tw.Flush()
	over := time.Duration((percentile(oidc, 50) - percentile(none, 50)) * float64(time.Millisecond))
	p("p50 added by OIDC: %.3f ms (target ≤ %.1f ms) %s", float64(over)/float64(time.Millisecond), float64(targetOIDCOverhead)/float64(time.Millisecond), targetMet(over <= targetOIDCOverhead))
	p("a token's first use, verified in full (RS256 signature, claims) by package auth in this process, %d tokens:", len(res.firstUse))
	p("          p50 %.3f ms, p99 %.3f ms; later uses of the same token hit pacsd's cache of verified tokens", percentile(res.firstUse, 50), percentile(res.firstUse, 99))
	p("")
}

// targetMet says whether a target is met.
func targetMet(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
