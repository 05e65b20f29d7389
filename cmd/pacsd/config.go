package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is pacsd's configuration. Every setting can come from the config
// file (its JSON name), the environment (PACSD_ and the name in capitals)
// and a flag (--name with dashes), in rising order of precedence. These
// names are an interface operators and scripts rely on: keep them stable.
type config struct {
	Data            string
	AETitle         string
	DIMSEAddr       string
	HTTPAddr        string
	Storage         string
	Index           string
	AllowAE         []string
	AllowAnyAE      bool
	Duplicates      string
	MaxAssociations int
	MaxPDU          int
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration
	RemoteAEs       []string
	MaxMatches      int
	CaseSensitivePN bool
	DICOMwebRoot    string
	CORSOrigins     []string
	MaxBody         int64
	LogLevel        string
	LogFormat       string

	// S3 credentials, for storage URLs that name a bucket. They are
	// secrets, so they have no flag, which would show them in process
	// listings; see s3Env.
	S3AccessKeyID     string
	S3SecretAccessKey string
	S3SessionToken    string

	// getenv is the environment the configuration was read from.
	getenv func(string) string
}

// option describes one setting.
type option struct {
	name  string // JSON name; the flag is the same with dashes
	usage string
	def   string
	set   func(c *config, v string) error
}

func (o option) flagName() string { return strings.ReplaceAll(o.name, "_", "-") }
func (o option) envName() string  { return "PACSD_" + strings.ToUpper(o.name) }

var options = []option{
	{"data", "directory of the embedded defaults: objects and index", "data",
		func(c *config, v string) error { c.Data = v; return nil }},
	{"ae_title", "the AE title pacsd answers to", "PACSD",
		func(c *config, v string) error { c.AETitle = v; return validAETitle(v) }},
	{"dimse_addr", "DIMSE listen address (default 127.0.0.1:11112 without an allow-list, :11112 with one)", "",
		func(c *config, v string) error { c.DIMSEAddr = v; return nil }},
	{"http_addr", "HTTP listen address: DICOMweb, WADO-URI and health checks", "127.0.0.1:8042",
		func(c *config, v string) error { c.HTTPAddr = v; return nil }},
	{"storage", "object storage URL: file:///path (default file://DATA/objects) or s3://BUCKET?endpoint=HOST:PORT&ack=direct|spool, with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "",
		func(c *config, v string) error { c.Storage = v; return nil }},
	{"index", "index URL: sqlite:///path (default sqlite://DATA/index.db)", "",
		func(c *config, v string) error { c.Index = v; return nil }},
	{"allow_ae", "comma-separated calling AE titles allowed to associate, each optionally AET@HOST or AET@CIDR", "",
		func(c *config, v string) error { c.AllowAE = splitList(v); return nil }},
	{"allow_any_ae", "accept associations from any calling AE on any address", "false",
		func(c *config, v string) (err error) { c.AllowAnyAE, err = strconv.ParseBool(v); return }},
	{"duplicates", "what to do with an instance already archived: replace, keep or reject", "replace",
		func(c *config, v string) error { c.Duplicates = v; return nil }},
	{"max_associations", "most concurrent DIMSE associations (0: no limit)", "64",
		func(c *config, v string) (err error) { c.MaxAssociations, err = strconv.Atoi(v); return }},
	{"max_pdu", "Maximum Length of received PDUs, in bytes", "262144",
		func(c *config, v string) (err error) { c.MaxPDU, err = strconv.Atoi(v); return }},
	{"idle_timeout", "abort associations idle this long (0: never)", "5m",
		func(c *config, v string) (err error) { c.IdleTimeout, err = time.ParseDuration(v); return }},
	{"shutdown_timeout", "how long shutdown waits for associations to finish", "30s",
		func(c *config, v string) (err error) { c.ShutdownTimeout, err = time.ParseDuration(v); return }},
	{"remote_aes", "remote AEs (C-MOVE destinations), comma-separated AET=HOST:PORT or AET=tls://HOST:PORT; the flag --remote-ae may be repeated", "",
		func(c *config, v string) error { c.RemoteAEs = splitList(v); return nil }},
	{"max_matches", "most matches a C-FIND returns before it ends with 0xA700, and a QIDO-RS search without a smaller limit (0: no limit)", "10000",
		func(c *config, v string) (err error) { c.MaxMatches, err = strconv.Atoi(v); return }},
	{"case_sensitive_names", "match person names case-sensitively in C-FIND", "false",
		func(c *config, v string) (err error) { c.CaseSensitivePN, err = strconv.ParseBool(v); return }},
	{"dicomweb_root", "path of the DICOMweb services", "/dicom-web",
		func(c *config, v string) error {
			if !strings.HasPrefix(v, "/") {
				return fmt.Errorf("dicomweb_root %q does not start with /", v)
			}
			c.DICOMwebRoot = v
			return nil
		}},
	{"cors_origins", "comma-separated origins allowed to call DICOMweb from a browser (* for any)", "*",
		func(c *config, v string) error { c.CORSOrigins = splitList(v); return nil }},
	{"max_body", "largest STOW-RS request body, in bytes", "4294967296",
		func(c *config, v string) (err error) { c.MaxBody, err = strconv.ParseInt(v, 10, 64); return }},
	{"log_level", "debug, info, warn or error", "info",
		func(c *config, v string) error { c.LogLevel = v; return nil }},
	{"log_format", "text or json", "text",
		func(c *config, v string) error { c.LogFormat = v; return nil }},
}

// secretOptions are settings that have no flag, which would show them in
// process listings: only the config file and the environment set them.
var secretOptions = []option{
	{"s3_access_key_id", "S3 access key; AWS_ACCESS_KEY_ID overrides it", "",
		func(c *config, v string) error { c.S3AccessKeyID = v; return nil }},
	{"s3_secret_access_key", "S3 secret key; AWS_SECRET_ACCESS_KEY overrides it", "",
		func(c *config, v string) error { c.S3SecretAccessKey = v; return nil }},
	{"s3_session_token", "S3 session token of temporary credentials; AWS_SESSION_TOKEN overrides it", "",
		func(c *config, v string) error { c.S3SessionToken = v; return nil }},
}

// s3Env is the lookup by which s3.ParseURL reads the credentials of a
// bucket: the AWS_ variables of the environment, as AWS's own tools read
// them, or else the s3_ settings of the config file (or their PACSD_
// variables). The pair comes from one place, never a key from one and the
// secret from the other.
func (c *config) s3Env() func(string) string {
	getenv := c.getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if getenv("AWS_ACCESS_KEY_ID") != "" || getenv("AWS_SECRET_ACCESS_KEY") != "" {
		return getenv
	}
	return func(name string) string {
		switch name {
		case "AWS_ACCESS_KEY_ID":
			return c.S3AccessKeyID
		case "AWS_SECRET_ACCESS_KEY":
			return c.S3SecretAccessKey
		case "AWS_SESSION_TOKEN":
			return c.S3SessionToken
		}
		return getenv(name)
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// loadConfig builds the configuration from defaults, the config file
// (--config or PACSD_CONFIG), the environment and the flags in args.
//
// extra, if not nil, adds the flags of a command other than serve to the
// set.
func loadConfig(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if extra != nil {
		extra(fs)
	}
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("PACSD_CONFIG"), "JSON configuration file (env PACSD_CONFIG)")
	flagVals := map[string]*string{}
	for _, o := range options {
		flagVals[o.name] = fs.String(o.flagName(), o.def, fmt.Sprintf("%s (env %s)", o.usage, o.envName()))
	}
	// --remote-ae AET=HOST:PORT may be given once per remote.
	var remotes []string
	fs.Func("remote-ae", "a remote AE, AET=HOST:PORT or AET=tls://HOST:PORT; repeat for each (adds to remote_aes)", func(v string) error {
		remotes = append(remotes, v)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pacsd %s [flags]\n\nEvery flag can also be set in the config file and the environment.\n"+
			"S3 credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or else from the config file's\n"+
			"s3_access_key_id and s3_secret_access_key (and s3_session_token); there is no flag for them.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	all := append(slices.Clip(options), secretOptions...)
	c := &config{getenv: getenv}
	for _, o := range all {
		if err := o.set(c, o.def); err != nil {
			return nil, fmt.Errorf("default of %s: %w", o.name, err)
		}
	}
	if *configFile != "" {
		if err := c.readFile(*configFile); err != nil {
			return nil, err
		}
	}
	for _, o := range all {
		v := getenv(o.envName())
		switch {
		case explicit[o.flagName()] && flagVals[o.name] != nil:
			v = *flagVals[o.name]
		case v == "":
			continue
		}
		if err := o.set(c, v); err != nil {
			return nil, fmt.Errorf("%s: %w", o.name, err)
		}
	}
	c.RemoteAEs = append(c.RemoteAEs, remotes...)
	return c, c.complete()
}

// readFile applies a JSON config file: an object whose keys are option
// names, values strings, numbers, booleans, or lists of strings.
func (c *config) readFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	for k, raw := range m {
		var o *option
		for _, opt := range append(slices.Clip(options), secretOptions...) {
			if opt.name == k {
				o = &opt
			}
		}
		if o == nil {
			return fmt.Errorf("config %s: unknown setting %q", path, k)
		}
		var v string
		var list []string
		var s string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			v = s
		case json.Unmarshal(raw, &list) == nil:
			v = strings.Join(list, ",")
		default:
			v = strings.TrimSpace(string(raw)) // numbers and booleans
		}
		if err := o.set(c, v); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// complete fills in the defaults that depend on other settings and checks
// the combination.
func (c *config) complete() error {
	if c.Storage == "" {
		c.Storage = "file://" + filepath.Join(c.Data, "objects")
	}
	c.Storage = withSpoolDir(c.Storage, c.Data)
	if c.Index == "" {
		c.Index = "sqlite://" + filepath.Join(c.Data, "index.db")
	}
	open := len(c.AllowAE) > 0 || c.AllowAnyAE
	if c.DIMSEAddr == "" {
		c.DIMSEAddr = "127.0.0.1:11112"
		if open {
			c.DIMSEAddr = ":11112"
		}
	}
	if !open && !isLoopback(c.DIMSEAddr) {
		return fmt.Errorf("refusing to listen for DIMSE on %s without a calling AE allow-list: set --allow-ae (or PACSD_ALLOW_AE) to the AE titles that may send and query, or --allow-any-ae to accept any", c.DIMSEAddr)
	}
	for _, e := range c.AllowAE {
		if _, err := parseAllowed(e); err != nil {
			return err
		}
	}
	if _, err := parseRemotes(c.RemoteAEs); err != nil {
		return err
	}
	switch c.Duplicates {
	case "replace", "keep", "reject":
	default:
		return fmt.Errorf("duplicates: %q is not replace, keep or reject", c.Duplicates)
	}
	if c.MaxPDU < 4096 || c.MaxPDU > 16<<20 {
		return fmt.Errorf("max_pdu: %d is outside 4096 to 16777216", c.MaxPDU)
	}
	return nil
}

// isLoopback reports whether addr ("host:port") listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func validAETitle(s string) error {
	t := strings.TrimSpace(s)
	if t == "" || len(t) > 16 {
		return fmt.Errorf("AE title %q must have 1 to 16 characters", s)
	}
	for _, r := range t {
		if r < 0x20 || r > 0x7E || r == '\\' {
			return fmt.Errorf("AE title %q has a character outside the AE repertoire", s)
		}
	}
	return nil
}

// allowed is one entry of the calling AE allow-list.
type allowed struct {
	ae     string
	prefix netip.Prefix // the peer's address must be in it, if valid
	host   string       // or resolve to one of its addresses
}

func parseAllowed(e string) (allowed, error) {
	ae, where, hasHost := strings.Cut(e, "@")
	if err := validAETitle(ae); err != nil {
		return allowed{}, fmt.Errorf("allow_ae: %w", err)
	}
	a := allowed{ae: strings.TrimSpace(ae)}
	if !hasHost {
		return a, nil
	}
	if p, err := netip.ParsePrefix(where); err == nil {
		a.prefix = p
	} else if ip, err := netip.ParseAddr(where); err == nil {
		a.prefix = netip.PrefixFrom(ip, ip.BitLen())
	} else if where != "" {
		a.host = where
	} else {
		return allowed{}, errors.New("allow_ae: empty host after @ in " + e)
	}
	return a, nil
}

// remote is a configured remote AE.
type remote struct {
	ae, addr string
	tls      bool
}

// parseRemotes reads AET=HOST:PORT and AET=tls://HOST:PORT entries.
func parseRemotes(list []string) (map[string]remote, error) {
	out := map[string]remote{}
	for _, e := range list {
		ae, addr, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("remote AE %q: want AET=HOST:PORT", e)
		}
		ae = strings.TrimSpace(ae)
		if err := validAETitle(ae); err != nil {
			return nil, fmt.Errorf("remote AE %q: %w", e, err)
		}
		r := remote{ae: ae}
		if rest, ok := strings.CutPrefix(addr, "tls://"); ok {
			r.tls, addr = true, rest
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("remote AE %q: address %q is not HOST:PORT", e, addr)
		}
		r.addr = addr
		if _, dup := out[ae]; dup {
			return nil, fmt.Errorf("remote AE %s configured twice", ae)
		}
		out[ae] = r
	}
	return out, nil
}
