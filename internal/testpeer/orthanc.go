package testpeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// OrthancOptions configures StartOrthanc.
type OrthancOptions struct {
	// Dir is the working directory: configuration, storage, index and
	// log. Required by StartOrthanc; StartOrthancT uses a new
	// tb.TempDir() when empty.
	Dir string
	// AET is Orthanc's AE title; default "ORTHANC".
	AET string
	// Modalities become DicomModalities, keyed by the name the REST API
	// uses (/modalities/{name}). Orthanc needs a modality here to send
	// C-MOVE results or C-STORE requests to it.
	Modalities map[string]Modality
	// DICOMweb loads the DICOMweb plugin of the Debian package
	// orthanc-dicomweb and serves QIDO-RS, WADO-RS and STOW-RS under
	// "/dicom-web/".
	DICOMweb bool
	// DICOMwebServers are remote DICOMweb servers for the plugin's client
	// (/dicom-web/servers/{name}), name → base URL.
	DICOMwebServers map[string]string
	// Config holds further top-level configuration options; each
	// replaces the generated option of the same name.
	Config map[string]any
	// Args are added to Orthanc's command line, e.g. "--verbose" or
	// "--trace-dicom".
	Args []string
}

// Orthanc is a running Orthanc server.
type Orthanc struct {
	AET       string
	DICOMAddr string // "127.0.0.1:port"
	DICOMPort int
	HTTPPort  int
	// URL is the base of the REST API, "http://127.0.0.1:port".
	URL string
	// DICOMwebURL is the base of the DICOMweb API, URL + "/dicom-web",
	// or empty if the plugin was not loaded.
	DICOMwebURL string
	// Dir is the working directory, holding orthanc.json.
	Dir string

	proc   *Process
	client *http.Client
}

// StartOrthanc starts Orthanc with a configuration generated in opts.Dir
// and waits until its DICOM port listens and GET /system answers.
//
// The configuration is made for tests: both ports are free ports reached
// on 127.0.0.1, and the REST API refuses other hosts (RemoteAccessAllowed
// false) but needs no password; every DICOM service is allowed to any
// caller and the called AE title is not checked; files are stored
// uncompressed, a re-sent instance replaces the stored one, and neither
// jobs nor fsyncs slow the run down.
func StartOrthanc(ctx context.Context, opts OrthancOptions) (*Orthanc, error) {
	if opts.Dir == "" {
		return nil, errors.New("testpeer: OrthancOptions.Dir is empty")
	}
	if opts.AET == "" {
		opts.AET = "ORTHANC"
	}
	var plugin string
	if opts.DICOMweb {
		var err error
		if plugin, err = dicomwebPlugin(ctx); err != nil {
			return nil, err
		}
	}
	o := &Orthanc{AET: opts.AET, Dir: opts.Dir}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	p, err := retryPorts(ctx, func(ports []int) (*Process, error) {
		o.DICOMPort, o.HTTPPort = ports[0], ports[1]
		o.DICOMAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.DICOMPort))
		o.URL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(o.HTTPPort))
		if plugin != "" {
			o.DICOMwebURL = o.URL + "/dicom-web"
		}
		config := filepath.Join(opts.Dir, "orthanc.json")
		if err := writeJSON(config, orthancConfig(o, opts, plugin)); err != nil {
			return nil, err
		}
		p, err := Start(ctx, Cmd{Name: "Orthanc", Args: append(append([]string(nil), opts.Args...), config), Dir: opts.Dir})
		if err != nil {
			return nil, err
		}
		o.proc = p
		if err := p.WaitTCP(ctx, o.DICOMAddr); err != nil {
			return p, err
		}
		return p, o.waitHTTP(ctx)
	}, 2)
	if err != nil {
		return nil, err
	}
	o.proc = p
	return o, nil
}

// StartOrthancT starts Orthanc for tb as StartOrthanc does, skipping or
// failing tb as Need does if Orthanc (or, with DICOMweb, its plugin) is not
// installed. Stop is registered with tb.Cleanup.
func StartOrthancT(tb testing.TB, opts OrthancOptions) *Orthanc {
	tb.Helper()
	Need(tb, "Orthanc")
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	o, err := StartOrthanc(tb.Context(), opts)
	check(tb, err)
	cleanup(tb, o.proc)
	return o
}

func orthancConfig(o *Orthanc, opts OrthancOptions, plugin string) map[string]any {
	modalities := map[string]any{}
	for name, m := range opts.Modalities {
		modalities[name] = map[string]any{"AET": m.AET, "Host": m.Host, "Port": m.Port}
	}
	cfg := map[string]any{
		"Name":                  "pacsd-test",
		"StorageDirectory":      filepath.Join(opts.Dir, "storage"),
		"IndexDirectory":        filepath.Join(opts.Dir, "index"),
		"StorageCompression":    false,
		"HttpServerEnabled":     true,
		"HttpPort":              o.HTTPPort,
		"RemoteAccessAllowed":   false,
		"AuthenticationEnabled": false,
		"DicomServerEnabled":    true,
		"DicomAet":              o.AET,
		"DicomPort":             o.DICOMPort,
		"DicomCheckCalledAet":   false,
		// Tests call from AE titles Orthanc does not know.
		"DicomAlwaysAllowEcho":   true,
		"DicomAlwaysAllowStore":  true,
		"DicomAlwaysAllowFind":   true,
		"DicomAlwaysAllowMove":   true,
		"DicomAlwaysAllowGet":    true,
		"DicomCheckModalityHost": false,
		"DicomModalities":        modalities,
		"OverwriteInstances":     true,
		// The database is thrown away with the directory, so saving jobs
		// in it is wasted work, and an fsync per stored instance would make
		// every benchmark a benchmark of the disk.
		"SaveJobs":        false,
		"SyncStorageArea": false,
	}
	if plugin != "" {
		servers := map[string]any{}
		for name, url := range opts.DICOMwebServers {
			servers[name] = []string{url}
		}
		cfg["Plugins"] = []string{plugin}
		cfg["DicomWeb"] = map[string]any{
			"Enable":     true,
			"Root":       "/dicom-web/",
			"EnableWado": true,
			"WadoRoot":   "/wado",
			"Ssl":        false,
			"Servers":    servers,
		}
	}
	for k, v := range opts.Config {
		cfg[k] = v
	}
	return cfg
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("testpeer: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("testpeer: %w", err)
	}
	return nil
}

// dicomwebPlugin finds the DICOMweb plugin's shared library among the
// files of the Debian package orthanc-dicomweb, so no path of one machine
// or one package version is written into the code.
func dicomwebPlugin(ctx context.Context) (string, error) {
	files, err := packageFiles(ctx, "orthanc-dicomweb")
	if err != nil {
		return "", err
	}
	for _, f := range files {
		base := filepath.Base(f)
		if !strings.HasPrefix(base, "libOrthancDicomWeb") || !strings.Contains(base, ".so") {
			continue
		}
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			return f, nil
		}
	}
	return "", notInstalledError("the DICOMweb plugin library of orthanc-dicomweb")
}

// packageFiles lists the files of an installed Debian package.
func packageFiles(ctx context.Context, pkg string) ([]string, error) {
	stdout, _, err := Run(ctx, "dpkg", "-L", pkg)
	if errors.Is(err, ErrNotInstalled) {
		return nil, fmt.Errorf("%w (dpkg, which lists Debian packages, is missing too)", notInstalledError(pkg))
	}
	if err != nil {
		// dpkg fails for a package that is not installed.
		return nil, fmt.Errorf("%w: %v", notInstalledError(pkg), err)
	}
	var files []string
	for _, line := range strings.Split(stdout, "\n") {
		// Other lines ("diverted by …") describe the ones before them.
		if strings.HasPrefix(line, "/") {
			files = append(files, line)
		}
	}
	return files, nil
}

// waitHTTP polls GET /system until Orthanc answers, the process exits or
// ctx ends.
func (o *Orthanc) waitHTTP(ctx context.Context) error {
	o.client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := o.GetJSON(rctx, "/system", nil)
		cancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-o.proc.Exited():
			t.Stop()
			return o.proc.exitError()
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("testpeer: waiting for Orthanc's REST API: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Modality returns o as a remote modality, for a pacsd configuration or
// another Orthanc's DicomModalities.
func (o *Orthanc) Modality() Modality {
	return Modality{AET: o.AET, Host: "127.0.0.1", Port: o.DICOMPort}
}

// Process returns the Orthanc process, for its log.
func (o *Orthanc) Process() *Process { return o.proc }

// Stop stops Orthanc; see Process.Stop.
func (o *Orthanc) Stop() error {
	err := o.proc.Stop()
	o.client.CloseIdleConnections()
	return err
}

// GetJSON sends GET to path of the REST API (e.g. "/instances") and decodes
// the JSON answer into v, unless v is nil. An answer other than 2xx is an
// error that quotes the start of the body Orthanc sent.
func (o *Orthanc) GetJSON(ctx context.Context, path string, v any) error {
	return o.do(ctx, http.MethodGet, path, nil, v)
}

// Get sends GET to path of the REST API (e.g. "/instances/{id}/file")
// and returns the body of a 2xx answer, which may be binary.
func (o *Orthanc) Get(ctx context.Context, path string) ([]byte, error) {
	var buf bytes.Buffer
	if err := o.do(ctx, http.MethodGet, path, nil, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RemoveFiles deletes, behind Orthanc's back, the files of its storage
// area that hold the instances sops, as a disk that loses them would: the
// instances stay in Orthanc's index. It returns how many files it
// removed. Orthanc must run with MaximumStorageCacheSize 0, or it serves
// them from its cache.
func (o *Orthanc) RemoveFiles(sops ...string) (int, error) {
	n := 0
	err := filepath.WalkDir(filepath.Join(o.Dir, "storage"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		// The File Meta Information, at the start, names the instance.
		head := make([]byte, 1024)
		m, _ := io.ReadFull(f, head)
		f.Close()
		for _, sop := range sops {
			if bytes.Contains(head[:m], mediaStorageSOPInstanceUID(sop)) {
				n++
				return os.Remove(p)
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("testpeer: %w", err)
	}
	return n, nil
}

// mediaStorageSOPInstanceUID encodes the element (0002,0003) of File
// Meta Information that names sop, explicit VR little endian.
func mediaStorageSOPInstanceUID(sop string) []byte {
	v := []byte(sop)
	if len(v)%2 == 1 {
		v = append(v, 0)
	}
	return append([]byte{0x02, 0x00, 0x03, 0x00, 'U', 'I', byte(len(v)), byte(len(v) >> 8)}, v...)
}

// PostJSON sends body, encoded as JSON, with POST to path of the REST API
// (e.g. "/modalities/scp/store") and decodes the answer into v, unless v is
// nil. A json.RawMessage body is sent as it is.
func (o *Orthanc) PostJSON(ctx context.Context, path string, body, v any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("testpeer: POST %s: %w", path, err)
	}
	return o.do(ctx, http.MethodPost, path, bytes.NewReader(b), v)
}

func (o *Orthanc) do(ctx context.Context, method, path string, body io.Reader, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, o.URL+path, body)
	if err != nil {
		return fmt.Errorf("testpeer: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("testpeer: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("testpeer: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if b, ok := v.(*bytes.Buffer); ok {
		_, err = io.Copy(b, resp.Body)
	} else if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(v)
	}
	if err != nil {
		return fmt.Errorf("testpeer: %s %s: %w", method, path, err)
	}
	return nil
}
