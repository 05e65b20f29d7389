package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseSettings parses a command line as pacsd does, with the environment
// env, and returns the command it selects, its settings completed.
func parseSettings(t *testing.T, args []string, env map[string]string) (any, error) {
	t.Helper()
	kctx, err := parse(args, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err != nil {
		return nil, err
	}
	if kctx == nil {
		t.Fatalf("pacsd %s printed help", strings.Join(args, " "))
	}
	cmd := kctx.Selected().Target.Addr().Interface()
	if c, ok := cmd.(*serveCommand); ok {
		err = complete(&c.storeSettings, &c.archiveSettings, &c.identitySettings, &c.remoteSettings, &c.dimseSettings, &c.httpSettings)
	}
	return cmd, err
}

// parseServe parses the settings of pacsd serve.
func parseServe(t *testing.T, args []string, env map[string]string) (*serveCommand, error) {
	t.Helper()
	cmd, err := parseSettings(t, append([]string{"serve"}, args...), env)
	if err != nil {
		return nil, err
	}
	return cmd.(*serveCommand), nil
}

// writeConfig writes a config file and returns its path.
func writeConfig(t *testing.T, js string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pacsd.json")
	if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// documented are the settings the README documents, each with its flag,
// environment variable and config file key, a value in each of their
// forms, and the default. These names are an interface: a change here is a
// change for every operator.
var documented = []struct {
	flag, env, key string
	arg            string // on the command line; "" for a boolean flag alone
	file           string // in the config file, as JSON
	want, def      any
	get            func(*serveCommand) any
}{
	{"--data", "PACSD_DATA", "data", "/srv/pacsd", `"/srv/pacsd"`, "/srv/pacsd", "data",
		func(c *serveCommand) any { return c.Data }},
	{"--ae-title", "PACSD_AE_TITLE", "ae_title", "TRUST_PACS", `"TRUST_PACS"`, "TRUST_PACS", "PACSD",
		func(c *serveCommand) any { return c.AETitle }},
	{"--dimse-addr", "PACSD_DIMSE_ADDR", "dimse_addr", "127.0.0.2:104", `"127.0.0.2:104"`, "127.0.0.2:104", "127.0.0.1:11112",
		func(c *serveCommand) any { return c.DIMSEAddr }},
	{"--http-addr", "PACSD_HTTP_ADDR", "http_addr", "127.0.0.1:8080", `"127.0.0.1:8080"`, "127.0.0.1:8080", "127.0.0.1:8042",
		func(c *serveCommand) any { return c.HTTPAddr }},
	{"--dicomweb-root", "PACSD_DICOMWEB_ROOT", "dicomweb_root", "/web", `"/web"`, "/web", "/dicom-web",
		func(c *serveCommand) any { return c.DICOMwebRoot }},
	{"--cors-origins", "PACSD_CORS_ORIGINS", "cors_origins", "https://a.example,https://b.example", `["https://a.example", "https://b.example"]`,
		[]string{"https://a.example", "https://b.example"}, []string{"*"},
		func(c *serveCommand) any { return c.CORSOrigins }},
	{"--max-body", "PACSD_MAX_BODY", "max_body", "1048576", `1048576`, int64(1 << 20), int64(4 << 30),
		func(c *serveCommand) any { return c.MaxBody }},
	{"--storage", "PACSD_STORAGE", "storage", "file:///srv/objects", `"file:///srv/objects"`, "file:///srv/objects", "file://data/objects",
		func(c *serveCommand) any { return c.Storage }},
	{"--index", "PACSD_INDEX", "index", "postgres://pacsd@db:5432/pacsd", `"postgres://pacsd@db:5432/pacsd"`, "postgres://pacsd@db:5432/pacsd", "sqlite://data/index.db",
		func(c *serveCommand) any { return c.Index }},
	{"--allow-ae", "PACSD_ALLOW_AE", "allow_ae", "CT01@10.0.0.1,MR02", `["CT01@10.0.0.1", "MR02"]`, []string{"CT01@10.0.0.1", "MR02"}, []string(nil),
		func(c *serveCommand) any { return c.AllowAE }},
	{"--allow-any-ae", "PACSD_ALLOW_ANY_AE", "allow_any_ae", "", `true`, true, false,
		func(c *serveCommand) any { return c.AllowAnyAE }},
	{"--duplicates", "PACSD_DUPLICATES", "duplicates", "keep", `"keep"`, "keep", "same-source-and-series",
		func(c *serveCommand) any { return c.Duplicates }},
	{"--max-associations", "PACSD_MAX_ASSOCIATIONS", "max_associations", "8", `8`, 8, 64,
		func(c *serveCommand) any { return c.MaxAssociations }},
	{"--max-pdu", "PACSD_MAX_PDU", "max_pdu", "65536", `65536`, 65536, 262144,
		func(c *serveCommand) any { return c.MaxPDU }},
	{"--idle-timeout", "PACSD_IDLE_TIMEOUT", "idle_timeout", "1m", `"1m"`, time.Minute, 5 * time.Minute,
		func(c *serveCommand) any { return c.IdleTimeout }},
	{"--shutdown-timeout", "PACSD_SHUTDOWN_TIMEOUT", "shutdown_timeout", "5s", `"5s"`, 5 * time.Second, 30 * time.Second,
		func(c *serveCommand) any { return c.ShutdownTimeout }},
	{"--remote-ae", "PACSD_REMOTE_AES", "remote_aes", "ORTHANC=127.0.0.1:4242,SECURE=tls://pacs.example:2762",
		`["ORTHANC=127.0.0.1:4242", "SECURE=tls://pacs.example:2762"]`,
		[]string{"ORTHANC=127.0.0.1:4242", "SECURE=tls://pacs.example:2762"}, []string(nil),
		func(c *serveCommand) any { return c.RemoteAEs }},
	{"--remote-web", "PACSD_REMOTE_WEBS", "remote_webs", "TRUSTB_WEB=https://b.example/dicom-web,RESEARCH=http://10.0.0.9/dicom-web",
		`["TRUSTB_WEB=https://b.example/dicom-web", "RESEARCH=http://10.0.0.9/dicom-web"]`,
		[]string{"TRUSTB_WEB=https://b.example/dicom-web", "RESEARCH=http://10.0.0.9/dicom-web"}, []string(nil),
		func(c *serveCommand) any { return c.RemoteWebs }},
	{"--forward", "PACSD_FORWARD", "forward", "REPORTING,TRUSTB_WEB", `["REPORTING", "TRUSTB_WEB"]`,
		[]string{"REPORTING", "TRUSTB_WEB"}, []string(nil),
		func(c *serveCommand) any { return c.Forward }},
	{"--node-id", "PACSD_NODE_ID", "node_id", "pacs-a", `"pacs-a"`, "pacs-a", "",
		func(c *serveCommand) any { return c.NodeID }},
	{"--issuer-by-ae", "PACSD_ISSUER_BY_AE", "issuer_by_ae", "CT01=RXH,MR02=RXH", `["CT01=RXH", "MR02=RXH"]`,
		[]string{"CT01=RXH", "MR02=RXH"}, []string(nil),
		func(c *serveCommand) any { return c.IssuerByAE }},
	{"--default-issuer", "PACSD_DEFAULT_ISSUER", "default_issuer", "RXH", `"RXH"`, "RXH", "",
		func(c *serveCommand) any { return c.DefaultIssuer }},
	{"--nhs-issuer", "PACSD_NHS_ISSUER", "nhs_issuer", "NHS", `["NHS"]`, []string{"NHS"}, []string{"NHS", "2.16.840.1.113883.2.1.4.1"},
		func(c *serveCommand) any { return c.NHSIssuer }},
	{"--max-matches", "PACSD_MAX_MATCHES", "max_matches", "100", `100`, 100, 10000,
		func(c *serveCommand) any { return c.MaxMatches }},
	{"--case-sensitive-names", "PACSD_CASE_SENSITIVE_NAMES", "case_sensitive_names", "", `true`, true, false,
		func(c *serveCommand) any { return c.CaseSensitivePN }},
	{"--dimse-tls-addr", "PACSD_DIMSE_TLS_ADDR", "dimse_tls_addr", "127.0.0.1:2762", `"127.0.0.1:2762"`, "127.0.0.1:2762", "",
		func(c *serveCommand) any { return c.DIMSETLSAddr }},
	{"--tls-cert", "PACSD_TLS_CERT", "tls_cert", "/etc/pacsd/tls.crt", `"/etc/pacsd/tls.crt"`, "/etc/pacsd/tls.crt", "",
		func(c *serveCommand) any { return c.TLSCert }},
	{"--tls-key", "PACSD_TLS_KEY", "tls_key", "/etc/pacsd/tls.key", `"/etc/pacsd/tls.key"`, "/etc/pacsd/tls.key", "",
		func(c *serveCommand) any { return c.TLSKey }},
	{"--tls-client-ca", "PACSD_TLS_CLIENT_CA", "tls_client_ca", "/etc/pacsd/clients.pem", `"/etc/pacsd/clients.pem"`, "/etc/pacsd/clients.pem", "",
		func(c *serveCommand) any { return c.TLSClientCA }},
	{"--tls-ca", "PACSD_TLS_CA", "tls_ca", "/etc/pacsd/peers.pem", `"/etc/pacsd/peers.pem"`, "/etc/pacsd/peers.pem", "",
		func(c *serveCommand) any { return c.TLSCA }},
	{"--http-auth", "PACSD_HTTP_AUTH", "http_auth", "oidc,token", `"oidc,token"`, "oidc,token", "none",
		func(c *serveCommand) any { return c.HTTPAuth }},
	{"--allow-anonymous-http", "PACSD_ALLOW_ANONYMOUS_HTTP", "allow_anonymous_http", "", `true`, true, false,
		func(c *serveCommand) any { return c.AllowAnonymousHTTP }},
	{"--oidc-issuer", "PACSD_OIDC_ISSUER", "oidc_issuer", "https://login.rxh.nhs.uk/realms/pacs", `"https://login.rxh.nhs.uk/realms/pacs"`, "https://login.rxh.nhs.uk/realms/pacs", "",
		func(c *serveCommand) any { return c.OIDCIssuer }},
	{"--oidc-audience", "PACSD_OIDC_AUDIENCE", "oidc_audience", "pacsd", `"pacsd"`, "pacsd", "",
		func(c *serveCommand) any { return c.OIDCAudience }},
	{"--oidc-roles-claim", "PACSD_OIDC_ROLES_CLAIM", "oidc_roles_claim", "realm_access.roles", `"realm_access.roles"`, "realm_access.roles", "scope",
		func(c *serveCommand) any { return c.OIDCRolesClaim }},
	{"--oidc-issuers-claim", "PACSD_OIDC_ISSUERS_CLAIM", "oidc_issuers_claim", "trusts", `"trusts"`, "trusts", "issuers",
		func(c *serveCommand) any { return c.OIDCIssuersClaim }},
	{"--oidc-leeway", "PACSD_OIDC_LEEWAY", "oidc_leeway", "5s", `"5s"`, 5 * time.Second, time.Minute,
		func(c *serveCommand) any { return c.OIDCLeeway }},
	{"--token-file", "PACSD_TOKEN_FILE", "token_file", "/etc/pacsd/tokens", `"/etc/pacsd/tokens"`, "/etc/pacsd/tokens", "",
		func(c *serveCommand) any { return c.TokenFile }},
	{"--audit-dir", "PACSD_AUDIT_DIR", "audit_dir", "/var/log/pacsd", `"/var/log/pacsd"`, "/var/log/pacsd", "",
		func(c *serveCommand) any { return c.AuditDir }},
	{"--audit-syslog", "PACSD_AUDIT_SYSLOG", "audit_syslog", "tls://arr.rxh.nhs.uk:6514", `"tls://arr.rxh.nhs.uk:6514"`, "tls://arr.rxh.nhs.uk:6514", "",
		func(c *serveCommand) any { return c.AuditSyslog }},
	{"--deid-key", "PACSD_DEID_KEY", "deid_key", "/etc/pacsd/deid.key", `"/etc/pacsd/deid.key"`, "/etc/pacsd/deid.key", "",
		func(c *serveCommand) any { return c.DeidKey }},
	{"--log-level", "PACSD_LOG_LEVEL", "log_level", "debug", `"debug"`, "debug", "info",
		func(c *serveCommand) any { return c.LogLevel }},
	{"--log-format", "PACSD_LOG_FORMAT", "log_format", "json", `"json"`, "json", "text",
		func(c *serveCommand) any { return c.LogFormat }},
}

// TestDocumentedSettings sets each documented setting by its flag, its
// environment variable and its config file key, and checks its default.
func TestDocumentedSettings(t *testing.T) {
	for _, s := range documented {
		t.Run(s.key, func(t *testing.T) {
			check := func(form string, c *serveCommand, err error, want any) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", form, err)
				}
				if got := s.get(c); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: %#v, want %#v", form, got, want)
				}
			}
			c, err := parseServe(t, nil, nil)
			check("default", c, err, s.def)

			args := []string{s.flag}
			envValue := "true"
			if s.arg != "" {
				args, envValue = append(args, s.arg), s.arg
			}
			c, err = parseServe(t, args, nil)
			check(strings.Join(args, " "), c, err, s.want)

			c, err = parseServe(t, nil, map[string]string{s.env: envValue})
			check(s.env+"="+envValue, c, err, s.want)

			conf := writeConfig(t, `{"`+s.key+`": `+s.file+`}`)
			c, err = parseServe(t, []string{"--config", conf}, nil)
			check(`{"`+s.key+`": `+s.file+`}`, c, err, s.want)
			c, err = parseServe(t, nil, map[string]string{"PACSD_CONFIG": conf})
			check("PACSD_CONFIG with "+s.file, c, err, s.want)
		})
	}
}

// TestPrecedence checks that a flag wins over the environment, which wins
// over the config file, which wins over the default, for each kind of
// value.
func TestPrecedence(t *testing.T) {
	conf := writeConfig(t, `{"ae_title": "FILE", "max_pdu": 16384, "allow_any_ae": true, "remote_aes": ["FILE=h:1"], "idle_timeout": "1m"}`)
	env := map[string]string{"PACSD_CONFIG": conf, "PACSD_AE_TITLE": "ENV", "PACSD_ALLOW_ANY_AE": "false", "PACSD_REMOTE_AES": "ENV=h:2"}
	c, err := parseServe(t, []string{"--ae-title", "FLAG", "--remote-ae", "FLAG=h:3"}, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"flag over environment and file", c.AETitle, "FLAG"},
		{"flag over environment and file, lists", c.RemoteAEs, []string{"FLAG=h:3"}},
		{"environment over file", c.AllowAnyAE, false},
		{"file over default", c.MaxPDU, 16384},
		{"file over default, durations", c.IdleTimeout, time.Minute},
		{"default", c.MaxAssociations, 64},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	c, err = parseServe(t, []string{"--allow-any-ae=false", "--config", conf}, map[string]string{"PACSD_ALLOW_ANY_AE": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if c.AllowAnyAE {
		t.Error("--allow-any-ae=false lost to the environment")
	}
	if c.AETitle != "FILE" {
		t.Errorf("--config on the command line: ae_title %q, want FILE", c.AETitle)
	}
}

// TestBooleanFlags checks that a boolean flag takes no value unless
// written --flag=value, so that the argument after it is left alone.
func TestBooleanFlags(t *testing.T) {
	for _, tc := range []struct {
		args                 []string
		anyAE, caseSensitive bool
		data                 string
	}{
		{[]string{"--allow-any-ae", "--data", "/d"}, true, false, "/d"},
		{[]string{"--data", "/d", "--allow-any-ae"}, true, false, "/d"},
		{[]string{"--allow-any-ae=true", "--case-sensitive-names", "--data", "/d"}, true, true, "/d"},
		{[]string{"--allow-any-ae=false", "--data", "/d"}, false, false, "/d"},
		// One dash, as Go's flag package and earlier versions of pacsd take them.
		{[]string{"-allow-any-ae", "-data=/d", "-case-sensitive-names=true"}, true, true, "/d"},
	} {
		c, err := parseServe(t, tc.args, nil)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if c.AllowAnyAE != tc.anyAE || c.CaseSensitivePN != tc.caseSensitive || c.Data != tc.data {
			t.Errorf("%v: allow_any_ae %v, case_sensitive_names %v, data %q; want %v, %v, %q",
				tc.args, c.AllowAnyAE, c.CaseSensitivePN, c.Data, tc.anyAE, tc.caseSensitive, tc.data)
		}
	}
	// A value that is no boolean is refused, not taken for true.
	for _, env := range []map[string]string{{"PACSD_ALLOW_ANY_AE": "sometimes"}, {"PACSD_CONFIG": writeConfig(t, `{"allow_any_ae": "sometimes"}`)}} {
		if _, err := parseServe(t, nil, env); err == nil || !strings.Contains(err.Error(), "allow") {
			t.Errorf("%v: %v, want an error about allow_any_ae", env, err)
		}
	}
}

// TestRepeatedSettings checks the forms of a list: a repeated flag, a
// comma-separated flag or variable, and a JSON list or string.
func TestRepeatedSettings(t *testing.T) {
	want := []string{"A=h:1", "B=h:2", "C=tls://h:3"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"repeated flag", []string{"--remote-ae", "A=h:1", "--remote-ae", "B=h:2", "--remote-ae", "C=tls://h:3"}, nil},
		{"comma-separated flag", []string{"--remote-ae", "A=h:1,B=h:2", "--remote-ae", "C=tls://h:3"}, nil},
		{"--remote-aes", []string{"--remote-aes", "A=h:1,B=h:2,C=tls://h:3"}, nil},
		{"variable", nil, map[string]string{"PACSD_REMOTE_AES": "A=h:1, B=h:2 ,C=tls://h:3"}},
		{"JSON list", []string{"--config", writeConfig(t, `{"remote_aes": ["A=h:1", "B=h:2", "C=tls://h:3"]}`)}, nil},
		{"JSON string", []string{"--config", writeConfig(t, `{"remote_aes": "A=h:1,B=h:2,C=tls://h:3"}`)}, nil},
	} {
		c, err := parseServe(t, tc.args, tc.env)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(c.RemoteAEs, want) {
			t.Errorf("%s: %q, want %q", tc.name, c.RemoteAEs, want)
		}
	}
}

// TestBadSettings checks that a wrong setting is refused with a message
// naming it and where it came from.
func TestBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		wants []string
	}{
		{"unknown key", []string{"--config", writeConfig(t, `{"ae_titel": "X"}`)}, nil, []string{"unknown setting", "ae_titel"}},
		{"flag of the command line only", []string{"--config", writeConfig(t, `{"from": "X"}`)}, nil, []string{"unknown setting", "from"}},
		{"not JSON", []string{"--config", writeConfig(t, `ae_title = X`)}, nil, []string{"config", "invalid character"}},
		{"no file", []string{"--config", "/nonexistent/pacsd.json"}, nil, []string{"/nonexistent/pacsd.json"}},
		{"object for a string", []string{"--config", writeConfig(t, `{"ae_title": {"a": 1}}`)}, nil, []string{"ae_title in", "want a string"}},
		{"number in the file", []string{"--config", writeConfig(t, `{"max_pdu": "big"}`)}, nil, []string{"max_pdu in", "big"}},
		{"number in the environment", nil, map[string]string{"PACSD_MAX_PDU": "big"}, []string{"PACSD_MAX_PDU", "big"}},
		{"duration", nil, map[string]string{"PACSD_IDLE_TIMEOUT": "5 minutes"}, []string{"PACSD_IDLE_TIMEOUT"}},
		{"AE title", []string{"--ae-title", "MUCH_TOO_LONG_AE_TITLE"}, nil, []string{"ae_title", "16 characters"}},
		{"duplicates", []string{"--duplicates", "merge"}, nil, []string{"duplicates", "merge"}},
		{"issuer by AE", []string{"--issuer-by-ae", "CT01"}, nil, []string{"issuer_by_ae", "AET=ISSUER"}},
		{"issuer by AE twice", nil, map[string]string{"PACSD_ISSUER_BY_AE": "CT01=A,CT01=B"}, []string{"issuer_by_ae", "CT01 is given twice"}},
		{"max PDU", []string{"--max-pdu", "100"}, nil, []string{"max_pdu", "4096"}},
		{"remote AE", []string{"--remote-ae", "ORTHANC"}, nil, []string{"ORTHANC", "AET=HOST:PORT"}},
		{"allow-list", []string{"--allow-ae", "CT01@"}, nil, []string{"allow_ae", "empty condition after @"}},
		{"allow-list certificate", []string{"--allow-ae", "CT01@cert:OU=x"}, nil, []string{"allow_ae", "CN, DNS or SHA256"}},
		{"DICOMweb root", []string{"--dicomweb-root", "dicom-web"}, nil, []string{"dicomweb_root"}},
		{"beyond loopback without an allow-list", []string{"--dimse-addr", ":104"}, nil, []string{"allow-list"}},
	} {
		_, err := parseServe(t, tc.args, tc.env)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
	}
	// A file holds the settings of every command: serve's are no error
	// for verify, which has no use for them.
	conf := writeConfig(t, `{"http_addr": "127.0.0.1:8080", "allow_any_ae": true, "s3_access_key_id": "k", "data": "/srv/pacsd"}`)
	cmd, err := parseSettings(t, []string{"verify", "--config", conf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := cmd.(*verifyCommand); v.Data != "/srv/pacsd" || v.S3AccessKeyID != "k" {
		t.Errorf("verify: data %q, s3_access_key_id %q", v.Data, v.S3AccessKeyID)
	}
	// Settings of the command line only are not read from elsewhere.
	if _, err := parseSettings(t, []string{"retrieve"}, map[string]string{"PACSD_FROM": "ORTHANC"}); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Errorf("retrieve took --from from the environment: %v", err)
	}
}

// TestS3Env checks where the credentials of a bucket come from: the AWS_
// variables when set, else the config file or the PACSD_ variables, never
// half from each, and never from a flag.
func TestS3Env(t *testing.T) {
	conf := writeConfig(t, `{"s3_access_key_id": "file-key", "s3_secret_access_key": "file-secret"}`)
	for _, tc := range []struct {
		name        string
		env         map[string]string
		key, secret string
	}{
		{"file only", nil, "file-key", "file-secret"},
		{"environment wins", map[string]string{"AWS_ACCESS_KEY_ID": "env-key", "AWS_SECRET_ACCESS_KEY": "env-secret"}, "env-key", "env-secret"},
		{"never half of each", map[string]string{"AWS_ACCESS_KEY_ID": "env-key"}, "env-key", ""},
		{"PACSD_ variables", map[string]string{"PACSD_S3_ACCESS_KEY_ID": "pacsd-key", "PACSD_S3_SECRET_ACCESS_KEY": "pacsd-secret"}, "pacsd-key", "pacsd-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseServe(t, []string{"--config", conf}, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			get := c.s3Env(func(k string) string { return tc.env[k] })
			if k, s := get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"); k != tc.key || s != tc.secret {
				t.Errorf("credentials %q/%q, want %q/%q", k, s, tc.key, tc.secret)
			}
		})
	}
	for _, cmd := range []string{"serve", "retrieve", "reindex", "verify"} {
		_, err := parse([]string{cmd, "--s3-secret-access-key", "x"}, func(string) string { return "" }, io.Discard, io.Discard)
		if _, ok := errors.AsType[*usageError](err); !ok {
			t.Errorf("%s: a flag set the secret key: %v", cmd, err)
		}
		var help strings.Builder
		if _, err := parse([]string{cmd, "-h"}, func(string) string { return "" }, &help, io.Discard); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(help.String(), "--s3") || !strings.Contains(help.String(), "PACSD_S3_SECRET_ACCESS_KEY") {
			t.Errorf("%s -h offers a flag for the secret key, or does not say where it comes from:\n%s", cmd, help.String())
		}
	}
}

// TestSettingsWithoutFlag checks the settings a flag cannot carry: a
// secret from the environment or the file, and a structure from the file.
func TestSettingsWithoutFlag(t *testing.T) {
	var cmd struct {
		storeSettings
		Tokens map[string]string `kong:"-" config:"remote_web_tokens" help:"tokens by name"`
		Rules  []struct {
			When map[string]string `json:"when"`
			Keep string            `json:"keep"`
		} `kong:"-" config:"rules" help:"rules"`
	}
	src := &source{
		getenv: func(k string) string { return map[string]string{"PACSD_S3_SECRET_ACCESS_KEY": "env-secret"}[k] },
		read:   true,
		path:   "pacsd.json",
		file: map[string]json.RawMessage{
			"s3_access_key_id":     json.RawMessage(`"file-key"`),
			"s3_secret_access_key": json.RawMessage(`"file-secret"`),
			"remote_web_tokens":    json.RawMessage(`{"RESEARCH": "t0k3n"}`),
			"rules":                json.RawMessage(`[{"when": {"Modality": "MG"}, "keep": "8y"}]`),
		},
	}
	if err := src.fill(nil, reflect.ValueOf(&cmd).Elem()); err != nil {
		t.Fatal(err)
	}
	if cmd.S3AccessKeyID != "file-key" || cmd.S3SecretAccessKey != "env-secret" {
		t.Errorf("credentials %q/%q, want file-key/env-secret", cmd.S3AccessKeyID, cmd.S3SecretAccessKey)
	}
	if cmd.Tokens["RESEARCH"] != "t0k3n" || len(cmd.Rules) != 1 || cmd.Rules[0].When["Modality"] != "MG" || cmd.Rules[0].Keep != "8y" {
		t.Errorf("tokens %v, rules %+v", cmd.Tokens, cmd.Rules)
	}
	src.file["rules"] = json.RawMessage(`{"when": "always"}`)
	if err := src.fill(nil, reflect.ValueOf(&cmd).Elem()); err == nil || !strings.Contains(err.Error(), "rules") {
		t.Errorf("rules of the wrong shape: %v", err)
	}
}
