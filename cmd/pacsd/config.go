package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicomweb"
)

// pacsd's settings are the fields of the settings groups below and of the
// commands' own structs. A command embeds the groups it uses, and kong
// makes each field a flag of that command; the same field is also read
// from the environment and from the JSON config file (see source). The
// names are an interface operators and scripts rely on: keep them stable.
// The struct tags say all there is to say about a setting:
//
//	help:"…"         what it is, for -h (always)
//	default:"…"      its default, written as on the command line
//	placeholder:"…"  the name of its value in -h: --data=DIR
//	name:"…"         the flag, where the field's name in dashes is not it
//	                 (always for names with acronyms: ae-title, max-pdu)
//	config:"key"     the config file key, where it is not the flag's name
//	                 with underscores; the environment variable is PACSD_
//	                 and the key in capitals
//	config:"-"       a flag of the command line only, such as retrieve's
//	                 --from: neither the environment nor the file sets it
//	kong:"-" config:"key"
//	                 no flag at all: a secret, which a flag would show in
//	                 process listings, or a structure only JSON can hold;
//	                 set by the environment (strings only) or the file
//
// A []string setting repeats (--remote-ae A=h:1 --remote-ae B=h:2) and
// also takes a comma-separated list, as its variable does; the file takes
// a JSON list or such a string.

// baseSettings are those of every command that reads settings.
type baseSettings struct {
	Config    string `placeholder:"FILE" help:"JSON config file: an object whose keys are the settings' names"`
	LogLevel  string `default:"info" placeholder:"LEVEL" help:"debug, info, warn or error"`
	LogFormat string `default:"text" placeholder:"FORMAT" help:"text or json"`
}

// logger returns the logger the settings ask for, writing to w.
func (b *baseSettings) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(b.LogLevel)); err != nil {
		return nil, fmt.Errorf("log_level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch b.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log_format: %q is not text or json", b.LogFormat)
}

// storeSettings say where the archive keeps its objects and its index:
// those of every command that opens them.
type storeSettings struct {
	Data    string `default:"data" placeholder:"DIR" help:"directory of the embedded defaults: objects, index and spool"`
	Storage string `placeholder:"URL" help:"object storage: file:///PATH (default file://DATA/objects) or s3://BUCKET?endpoint=HOST:PORT&ack=direct|spool, with credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"`
	Index   string `placeholder:"URL" help:"index: sqlite:///PATH (default sqlite://DATA/index.db) or postgres://USER@HOST:PORT/DB?sslmode=MODE"`

	// S3 credentials, for storage URLs that name a bucket. The AWS_
	// variables win over them; see s3Env.
	S3AccessKeyID     string `kong:"-" config:"s3_access_key_id" help:"S3 access key; AWS_ACCESS_KEY_ID wins over it"`
	S3SecretAccessKey string `kong:"-" config:"s3_secret_access_key" help:"S3 secret key; AWS_SECRET_ACCESS_KEY wins over it"`
	S3SessionToken    string `kong:"-" config:"s3_session_token" help:"S3 session token of temporary credentials; AWS_SESSION_TOKEN wins over it"`
}

// complete fills in the defaults that depend on the data directory.
func (s *storeSettings) complete() error {
	if s.Storage == "" {
		s.Storage = "file://" + filepath.Join(s.Data, "objects")
	}
	s.Storage = withSpoolDir(s.Storage, s.Data)
	if s.Index == "" {
		s.Index = "sqlite://" + filepath.Join(s.Data, "index.db")
	}
	return nil
}

// s3Env is the lookup by which s3.ParseURL reads the credentials of a
// bucket: the AWS_ variables of the environment getenv, as AWS's own tools
// read them, or else the s3_ settings. The pair comes from one place,
// never a key from one and the secret from the other.
func (s *storeSettings) s3Env(getenv func(string) string) func(string) string {
	if getenv("AWS_ACCESS_KEY_ID") != "" || getenv("AWS_SECRET_ACCESS_KEY") != "" {
		return getenv
	}
	return func(name string) string {
		switch name {
		case "AWS_ACCESS_KEY_ID":
			return s.S3AccessKeyID
		case "AWS_SECRET_ACCESS_KEY":
			return s.S3SecretAccessKey
		case "AWS_SESSION_TOKEN":
			return s.S3SessionToken
		}
		return getenv(name)
	}
}

// archiveSettings say how the archive names itself and takes instances
// in: those of every command that stores.
type archiveSettings struct {
	AETitle    string `name:"ae-title" default:"PACSD" placeholder:"AET" help:"the AE title pacsd answers to and calls from"`
	Duplicates string `default:"same-source-and-series" placeholder:"POLICY" help:"what to do with an instance already archived: same-source-and-series, replace, keep or reject"`
}

func (a *archiveSettings) complete() error {
	if err := validAETitle(a.AETitle); err != nil {
		return fmt.Errorf("ae_title: %w", err)
	}
	a.AETitle = strings.TrimSpace(a.AETitle)
	if _, err := archive.ParseDuplicatePolicy(a.Duplicates); err != nil {
		return fmt.Errorf("duplicates: %w", err)
	}
	return nil
}

// remoteSettings are the other DICOM nodes pacsd knows.
type remoteSettings struct {
	RemoteAEs []string `name:"remote-ae" aliases:"remote-aes" config:"remote_aes" placeholder:"AET=HOST:PORT" help:"a remote AE (C-MOVE destination, storage commitment requester, retrieve source), AET=HOST:PORT or AET=tls://HOST:PORT; repeat for each"`
}

func (r *remoteSettings) complete() error {
	r.RemoteAEs = trimList(r.RemoteAEs)
	_, err := r.remotes()
	return err
}

// remotes returns the remote AEs by AE title.
func (r *remoteSettings) remotes() (map[string]remote, error) { return parseRemotes(r.RemoteAEs) }

// dimseSettings are those of the DIMSE listener.
type dimseSettings struct {
	DIMSEAddr       string        `name:"dimse-addr" placeholder:"HOST:PORT" help:"DIMSE listen address (default 127.0.0.1:11112 without an allow-list, :11112 with one)"`
	AllowAE         []string      `name:"allow-ae" placeholder:"AET[@HOST|@CIDR][@cert:CN=NAME][#ISSUER|…]" help:"calling AE titles allowed to associate, each optionally tied to a host, address or network, to a TLS client certificate, and to the issuers of patient IDs it may reach; comma-separated or repeated"`
	AllowAnyAE      bool          `name:"allow-any-ae" help:"accept associations from any calling AE on any address"`
	MaxAssociations int           `name:"max-associations" default:"64" placeholder:"N" help:"most concurrent DIMSE associations (0: no limit)"`
	MaxPDU          int           `name:"max-pdu" default:"262144" placeholder:"BYTES" help:"Maximum Length of received PDUs, in bytes"`
	IdleTimeout     time.Duration `name:"idle-timeout" default:"5m" placeholder:"DURATION" help:"abort associations idle this long (0: never)"`
}

// complete fills in the listen address and refuses one beyond loopback
// without an allow-list.
func (d *dimseSettings) complete() error {
	d.AllowAE = trimList(d.AllowAE)
	open := len(d.AllowAE) > 0 || d.AllowAnyAE
	if d.DIMSEAddr == "" {
		d.DIMSEAddr = "127.0.0.1:11112"
		if open {
			d.DIMSEAddr = ":11112"
		}
	}
	if err := d.checkListen(d.DIMSEAddr); err != nil {
		return err
	}
	if _, err := auth.ParseAllowList(d.AllowAE); err != nil {
		return err
	}
	if d.MaxPDU < 4096 || d.MaxPDU > 16<<20 {
		return fmt.Errorf("max_pdu: %d is outside 4096 to 16777216", d.MaxPDU)
	}
	return nil
}

// checkListen refuses a DIMSE listen address beyond loopback without a
// calling AE allow-list.
func (d *dimseSettings) checkListen(addr string) error {
	if len(d.AllowAE) > 0 || d.AllowAnyAE || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("refusing to listen for DIMSE on %s without a calling AE allow-list: set --allow-ae (or PACSD_ALLOW_AE) to the AE titles that may send and query, or --allow-any-ae to accept any", addr)
}

// querySettings are those of C-FIND and QIDO-RS.
type querySettings struct {
	MaxMatches      int  `name:"max-matches" default:"10000" placeholder:"N" help:"most matches a C-FIND returns before it ends with 0xA700, and a QIDO-RS search without a smaller limit (0: no limit)"`
	CaseSensitivePN bool `name:"case-sensitive-names" help:"match person names case-sensitively"`
}

// httpSettings are those of the HTTP listener: DICOMweb, WADO-URI and
// the health checks.
type httpSettings struct {
	HTTPAddr     string   `name:"http-addr" default:"127.0.0.1:8042" placeholder:"HOST:PORT" help:"HTTP listen address: DICOMweb, WADO-URI and health checks"`
	DICOMwebRoot string   `name:"dicomweb-root" default:"/dicom-web" placeholder:"PATH" help:"path of the DICOMweb services"`
	CORSOrigins  []string `name:"cors-origins" default:"*" placeholder:"ORIGIN" help:"origins allowed to call DICOMweb from a browser (* for any); comma-separated or repeated"`
	MaxBody      int64    `name:"max-body" default:"4294967296" placeholder:"BYTES" help:"largest STOW-RS request body, in bytes"`
	PublicURL    string   `name:"public-url" placeholder:"URL" help:"URL clients reach the HTTP server at behind a reverse proxy, e.g. https://pacs.example.org/archive; URLs in responses start with it"`
}

func (h *httpSettings) complete() error {
	if !strings.HasPrefix(h.DICOMwebRoot, "/") {
		return fmt.Errorf("dicomweb_root %q does not start with /", h.DICOMwebRoot)
	}
	h.CORSOrigins = trimList(h.CORSOrigins)
	return dicomweb.CheckPublicURL(h.PublicURL)
}

// trimList drops the spaces around the entries of a list, and empty ones:
// "A, B" reads as A and B.
func trimList(list []string) []string {
	var out []string
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// completer is a settings group with defaults that depend on other
// settings, or combinations to check.
type completer interface{ complete() error }

// complete completes the settings groups of a command, in order.
func complete(groups ...completer) error {
	for _, g := range groups {
		if err := g.complete(); err != nil {
			return err
		}
	}
	return nil
}

// source gives kong the settings that the command line leaves unset: the
// environment (PACSD_ and the setting's key in capitals) first, then the
// config file (--config, or PACSD_CONFIG). So a flag wins over the
// environment, which wins over the file, which wins over the default.
//
// kong has environment variables and config files of its own, but reads
// the process's environment, where run is given one, and lets a file win
// over the environment.
type source struct {
	getenv func(string) string

	read bool
	path string                     // of the config file, "" if none
	file map[string]json.RawMessage // its settings
	err  error                      // of reading it
}

var _ kong.Resolver = (*source)(nil)

// settingKey returns the config file key of a flag, "" for a flag of the
// command line only.
func settingKey(f *kong.Flag) string {
	switch k := f.Tag.Get("config"); k {
	case "-":
		return ""
	case "":
		return strings.ReplaceAll(f.Name, "-", "_")
	default:
		return k
	}
}

// envName returns the environment variable of the setting key.
func envName(key string) string { return "PACSD_" + strings.ToUpper(key) }

// Resolve implements kong.Resolver.
func (s *source) Resolve(kctx *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
	key := settingKey(f)
	if key == "" || f.Name == "help" {
		return nil, nil
	}
	if v := s.getenv(envName(key)); v != "" {
		return checkValue(f, v, envName(key))
	}
	if key == "config" {
		return nil, nil // the file does not name itself
	}
	if err := s.load(kctx); err != nil {
		return nil, err
	}
	raw, ok := s.file[key]
	if !ok {
		return nil, nil
	}
	from := fmt.Sprintf("%s in %s", key, s.path)
	v, err := flagValue(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return checkValue(f, v, from)
}

// Validate implements kong.Resolver: it refuses a config file with a key
// that is no setting of any command, most likely a misspelt one.
func (s *source) Validate(app *kong.Application) error {
	if len(s.file) == 0 {
		return nil
	}
	known := map[string]bool{}
	err := kong.Visit(app, func(n kong.Visitable, next kong.Next) error {
		if n, ok := n.(*kong.Node); ok {
			for _, f := range n.Flags {
				known[settingKey(f)] = true
			}
			for _, fs := range fileSettings(n.Target) {
				known[fs.key] = true
			}
		}
		return next(nil)
	})
	if err != nil {
		return err
	}
	delete(known, "config")
	for key := range s.file {
		if !known[key] {
			return fmt.Errorf("config %s: unknown setting %q", s.path, key)
		}
	}
	return nil
}

// load reads the config file, once: the one --config names on the command
// line, else the one PACSD_CONFIG names.
func (s *source) load(kctx *kong.Context) error {
	if s.read {
		return s.err
	}
	s.read = true
	s.path = s.getenv("PACSD_CONFIG")
	for _, p := range kctx.Path {
		if p.Flag != nil && p.Flag.Name == "config" && !p.Resolved {
			s.path, _ = kctx.FlagValue(p.Flag).(string)
		}
	}
	if s.path == "" {
		return nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		s.err = fmt.Errorf("config: %w", err)
		return s.err
	}
	if err := json.Unmarshal(b, &s.file); err != nil {
		s.err = fmt.Errorf("config %s: %w", s.path, err)
	}
	return s.err
}

// flagValue turns a JSON value of the config file into what kong parses
// for a flag: a string as it is, a number or a boolean as written, a list
// as a list.
func flagValue(raw json.RawMessage) (any, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	switch v.(type) {
	case string, []any:
		return v, nil
	case float64, bool:
		return strings.TrimSpace(string(raw)), nil
	}
	return nil, errors.New("want a string, number, boolean or list")
}

// checkValue parses v as flag f would, to report a bad value with where
// it came from.
func checkValue(f *kong.Flag, v any, from string) (any, error) {
	scratch := reflect.New(f.Target.Type()).Elem()
	scan := kong.ScanFromTokens(kong.Token{Type: kong.FlagValueToken, Value: v})
	if err := f.Mapper.Decode(&kong.DecodeContext{Value: f.Value, Scan: scan}, scratch); err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return v, nil
}

// fileSetting is a setting without a flag: a field tagged kong:"-" and
// config:"key".
type fileSetting struct {
	key   string
	help  string
	field reflect.Value
}

// fileSettings returns the settings without a flag of the struct v, and
// of the structs it embeds.
func fileSettings(v reflect.Value) []fileSetting {
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []fileSetting
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		switch {
		case sf.Anonymous && sf.Type.Kind() == reflect.Struct:
			out = append(out, fileSettings(v.Field(i))...)
		case sf.Tag.Get("kong") == "-" && sf.Tag.Get("config") != "":
			out = append(out, fileSetting{key: sf.Tag.Get("config"), help: sf.Tag.Get("help"), field: v.Field(i)})
		}
	}
	return out
}

// fill sets the settings without a flag of the command cmd (a struct
// kong parsed into) from the environment, or else the config file.
func (s *source) fill(kctx *kong.Context, cmd reflect.Value) error {
	settings := fileSettings(cmd)
	if len(settings) == 0 {
		return nil
	}
	if err := s.load(kctx); err != nil {
		return err
	}
	for _, fs := range settings {
		if v := s.getenv(envName(fs.key)); v != "" && fs.field.Kind() == reflect.String {
			fs.field.SetString(v)
			continue
		}
		if raw, ok := s.file[fs.key]; ok {
			if err := json.Unmarshal(raw, fs.field.Addr().Interface()); err != nil {
				return fmt.Errorf("config %s: %s: %w", s.path, fs.key, err)
			}
		}
	}
	return nil
}

// settingsHelp explains, below a command's flags, where else settings
// come from, and lists the settings of cmd that have no flag.
func settingsHelp(w io.Writer, cmd *kong.Node) error {
	if cmd == nil || !slices.ContainsFunc(cmd.Flags, func(f *kong.Flag) bool { return f.Name == "config" }) {
		return nil
	}
	fmt.Fprint(w, `
Each setting can also be given in the environment, by the variable shown
in brackets, and in the config file, by the same name in lower case
without PACSD_ (PACSD_MAX_PDU is "max_pdu"). A flag wins over the
environment, which wins over the file.
`)
	settings := fileSettings(cmd.Target)
	if len(settings) == 0 {
		return nil
	}
	fmt.Fprint(w, "\nSettings of the environment and the config file only (a flag would show a secret in process listings):\n")
	for _, fs := range settings {
		fmt.Fprintf(w, "  %s, %s\n        %s\n", fs.key, envName(fs.key), fs.help)
	}
	return nil
}

// flagHelp is a flag's line in -h: its help, its default and its
// environment variable.
func flagHelp(v *kong.Value) string {
	h := v.Help
	if v.Flag == nil {
		return h
	}
	if v.Default != "" && !v.IsBool() {
		h += " (default " + v.Default + ")"
	}
	if key := settingKey(v.Flag); key != "" && v.Name != "help" {
		h += " [$" + envName(key) + "]"
	}
	return h
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
