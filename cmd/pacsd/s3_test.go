package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/s3"
)

// s3Archive is a MinIO bucket for pacsd's objects, with the credentials
// set in the environment that pacsd inherits.
type s3Archive struct {
	srv    *testpeer.S3Server
	bucket string
}

func newS3Archive(t *testing.T) *s3Archive {
	t.Helper()
	testpeer.Need(t, "storescu", "minio")
	srv := testpeer.StartMinIOT(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	var b [6]byte
	rand.Read(b[:])
	return &s3Archive{srv: srv, bucket: "pacsd-e2e-" + hex.EncodeToString(b[:])}
}

// url returns the storage URL of the bucket, with extra parameters.
func (a *s3Archive) url(params ...string) string {
	u := fmt.Sprintf("s3://%s?endpoint=%s&secure=false&region=%s", a.bucket, a.srv.Endpoint, a.srv.Region)
	for _, p := range params {
		u += "&" + p
	}
	return u
}

// store opens the bucket directly, as an auditor would.
func (a *s3Archive) store(t *testing.T) *s3.Store {
	t.Helper()
	st, err := s3.New(t.Context(), s3.Config{Endpoint: a.srv.Endpoint, Region: a.srv.Region, Bucket: a.bucket,
		AccessKey: a.srv.AccessKey, SecretKey: a.srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkObjects checks that every file was archived: the bucket holds the
// object its index record names, of the recorded size and SHA-256, and
// the object is our File Meta Information followed by the file's data
// set, byte for byte. It also checks that the bucket holds nothing else.
func checkObjects(t *testing.T, st storage.Store, data string, files []dcmgen.File) {
	t.Helper()
	ctx := t.Context()
	db, err := sqlite.Open(ctx, filepath.Join(data, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, f := range files {
		row, err := db.Instance(ctx, f.SOPInstanceUID)
		if err != nil {
			t.Errorf("index: %s: %v", f.SOPInstanceUID, err)
			continue
		}
		obj, err := st.Open(ctx, row.Key)
		if err != nil {
			t.Errorf("bucket: %s: %v", row.Key, err)
			continue
		}
		b, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != row.SHA256 || int64(len(b)) != row.Size {
			t.Errorf("%s: object's SHA-256/size %x/%d, index says %s/%d", row.Key, sum, len(b), row.SHA256, row.Size)
		}
		meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Errorf("%s: %v", row.Key, err)
			continue
		}
		if meta.MediaStorageSOPInstanceUID != f.SOPInstanceUID || meta.ImplementationClassUID != dicom.ImplementationClassUID {
			t.Errorf("%s: File Meta Information %+v is not ours for %s", row.Key, meta, f.SOPInstanceUID)
		}
		if _, want := part10(t, f.Path); !bytes.Equal(b[n:], want) {
			t.Errorf("%s: data set in the bucket differs from the file's", row.Key)
		}
	}
	n := 0
	for info, err := range st.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		if !archive.IsRecord(info.Key) {
			n++
		}
	}
	if n != len(files) {
		t.Errorf("the bucket holds %d instance objects, want %d", n, len(files))
	}
}

// issuerRecords is the number of records of their sender's issuer (none
// here) that pacsd writes for instances stored while S3 is down: it
// cannot read whether an earlier one says the same, so it writes one,
// once per calling AE and process.
const issuerRecords = 1

func writeSeries(t *testing.T, n int) (string, []dcmgen.File) {
	t.Helper()
	dir := t.TempDir()
	files, err := dcmgen.WriteSeries(dir, n, 48<<10, dcmgen.Instance{
		Patient: dcmgen.Patient{Name: "Bucket^Betty", ID: "S3"},
		Series:  dcmgen.Series{Modality: "CT"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// TestS3Storage runs pacsd on a MinIO bucket, which it creates, and
// checks that what storescu sends ends up in the bucket byte for byte.
func TestS3Storage(t *testing.T) {
	a := newS3Archive(t)
	dir, files := writeSeries(t, 6)
	data := t.TempDir()
	p := startPacsd(t, data, "--storage", a.url())
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	p.stop()
	checkObjects(t, a.store(t), data, files)
}

// TestS3CredentialsFromConfig runs pacsd on a bucket whose credentials
// are in its config file, not in the environment, and checks that the
// secret never reaches the log.
func TestS3CredentialsFromConfig(t *testing.T) {
	a := newS3Archive(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	conf := filepath.Join(t.TempDir(), "pacsd.json")
	js := fmt.Sprintf(`{"storage": %q, "s3_access_key_id": %q, "s3_secret_access_key": %q}`, a.url(), a.srv.AccessKey, a.srv.SecretKey)
	if err := os.WriteFile(conf, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, files := writeSeries(t, 3)
	data := t.TempDir()
	p := startPacsd(t, data, "--config", conf)
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	p.stop()
	checkObjects(t, a.store(t), data, files)
	if strings.Contains(p.log(), a.srv.SecretKey) {
		t.Errorf("the secret key is in pacsd's log")
	}
}

// storeOne sends one file with storescu and returns its output.
func storeOne(t *testing.T, p *instance, path string) (string, error) {
	t.Helper()
	return p.dcmtk("storescu", "-v", path)
}

// TestS3Unavailable stops MinIO under a running pacsd that acknowledges
// only what S3 has confirmed: a C-STORE must then fail with 0xA700 within
// seconds and leave no index record, and once MinIO is back the same
// pacsd must store again.
func TestS3Unavailable(t *testing.T) {
	a := newS3Archive(t)
	_, files := writeSeries(t, 3)
	data := t.TempDir()
	p := startPacsd(t, data, "--storage", a.url("ack=direct"))
	if out, err := storeOne(t, p, files[0].Path); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}

	if err := a.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// -d shows the response's status in hexadecimal.
	out, err := p.dcmtk("storescu", "-d", files[1].Path)
	took := time.Since(start)
	status := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "DIMSE Status") {
			status = strings.TrimSpace(line)
		}
	}
	t.Logf("storescu with MinIO down, after %v: %s", took.Round(time.Millisecond), status)
	if !strings.Contains(strings.ToLower(status), "0xa7") {
		t.Errorf("storescu with MinIO down (err %v) does not report status 0xA7xx:\n%s", err, out)
	}
	// Nothing half-done: no index record without its object.
	db, err := sqlite.Open(t.Context(), filepath.Join(data, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Instance(t.Context(), files[1].SOPInstanceUID); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("index record of the refused instance: %v, want %v", err, index.ErrNotFound)
	}
	db.Close()
	if took > 30*time.Second {
		t.Errorf("the C-STORE took %v to fail", took)
	}

	if err := a.srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, f := range files[1:] {
		if out, err := storeOne(t, p, f.Path); err != nil || !strings.Contains(out, "Success") {
			t.Fatalf("storescu after MinIO is back: %v\n%s", err, out)
		}
	}
	p.stop()
	if log := p.log(); !strings.Contains(log, "storage: unavailable") {
		t.Errorf("pacsd's log does not say storage was unavailable")
	}
	checkObjects(t, a.store(t), data, files)
}

// TestS3Spool runs pacsd with ack=spool: while MinIO is down, C-STOREs
// succeed into the spool below the data directory, and once it is back
// the objects drain into the bucket; pacsd reads them wherever they are.
func TestS3Spool(t *testing.T) {
	a := newS3Archive(t)
	dir, files := writeSeries(t, 8)
	data := t.TempDir()
	p := startPacsd(t, data, "--storage", a.url("ack=spool"))
	if err := a.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu with MinIO down and a spool: %v\n%s", err, out)
	}
	spoolDir := filepath.Join(data, "spool")
	if n := countFiles(t, spoolDir); n != len(files)+issuerRecords {
		t.Errorf("the spool holds %d files, want %d and %d record", n, len(files), issuerRecords)
	}
	checkSpoolBacklog(t, p.httpAddr, len(files)+issuerRecords)
	if err := a.srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for countFiles(t, spoolDir) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := countFiles(t, spoolDir); n != 0 {
		t.Fatalf("the spool still holds %d files two minutes after MinIO came back", n)
	}
	checkSpoolBacklog(t, p.httpAddr, 0)
	p.stop()
	checkObjects(t, a.store(t), data, files)
}

// TestS3SpoolStartsDuringOutage starts pacsd with ack=spool while MinIO
// is down: it must start, take in images, and upload them, into the
// bucket it creates then, once MinIO is back.
func TestS3SpoolStartsDuringOutage(t *testing.T) {
	a := newS3Archive(t)
	dir, files := writeSeries(t, 3)
	if err := a.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startPacsd(t, data, "--storage", a.url("ack=spool"))
	if findLog(p.log(), "S3 is unreachable; starting anyway, into the spool, and uploading once it answers") == nil {
		t.Errorf("pacsd does not warn that S3 was unreachable at start")
	}
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	// Taking images in, pacsd is ready, though S3 is not, and says what
	// waits in the spool.
	var ready struct {
		Status string
		Checks map[string]struct{ Status, Detail string }
	}
	if code := getJSON(t, "http://"+p.httpAddr+"/readyz", &ready); code != 200 || ready.Checks["storage"].Status != "ok" ||
		!strings.Contains(ready.Checks["spool"].Detail, fmt.Sprintf("%d objects", len(files)+issuerRecords)) {
		t.Errorf("/readyz while spooling: %d %+v, want 200 with %d objects in the spool", code, ready, len(files)+issuerRecords)
	}
	if err := a.srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	spoolDir := filepath.Join(data, "spool")
	for deadline := time.Now().Add(2 * time.Minute); countFiles(t, spoolDir) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
	checkObjects(t, a.store(t), data, files)
}

// TestS3BadURL checks that pacsd refuses to start on a storage URL it
// cannot use, saying why.
func TestS3BadURL(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	for _, tc := range []struct{ url, want string }{
		{"s3://bucket?endpoint=127.0.0.1:1&secure=false&ack=later", "ack"},
		{"s3://bucket?endpoint=127.0.0.1:1&secure=false&spool_dir=/var/spool/pacsd", "spool_dir"},
		{"s3://bucket?endpoint=127.0.0.1:1&secure=false&bogus=1", "unknown parameter"},
		{"s3://bucket?endpoint=127.0.0.1:1&secure=false&max_retries=1", "unavailable"},
		{"gs://bucket", "file://"},
		{"s3://bucket?endpoint=127.0.0.1:1&%zz", "query"},
		{"s3://bucket?endpoint=127.0.0.1:1&ack=spool&ack=direct", "2 times"},
	} {
		var stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err := run(ctx, []string{"serve", "--data", t.TempDir(), "--storage", tc.url, "--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			os.Getenv, io.Discard, &stderr)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve --storage %s = %v, want an error saying %q", tc.url, err, tc.want)
		}
	}
	var stderr bytes.Buffer
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	err := run(t.Context(), []string{"serve", "--data", t.TempDir(), "--storage", "s3://bucket"}, os.Getenv, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("serve on S3 without credentials = %v", err)
	}
}

func TestWithSpoolDir(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"file:///x", "file:///x"},
		{"s3://b", "s3://b"},
		{"s3://b?ack=direct", "s3://b?ack=direct"},
		{"s3://b?ack=spool", "s3://b?ack=spool&spool_dir=%2Fdata%2Fspool"},
		{"s3://b?ack=spool&spool_dir=/s", "s3://b?ack=spool&spool_dir=/s"},
	} {
		if got := withSpoolDir(tc.in, "/data"); got != tc.want {
			t.Errorf("withSpoolDir(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// countFiles counts the regular files below dir, 0 if it does not exist.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}
