package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestTwoNodes runs two pacsd processes on one bucket (MinIO) and one
// index (PostgreSQL), as a region's archive runs stateless nodes behind a
// load balancer: what one node stores, the other finds and serves at
// once; the same instance stored through both at the same time is one
// instance.
func TestTwoNodes(t *testing.T) {
	testpeer.Need(t, "storescu", "getscu", "minio", "postgres")
	a3 := newS3Archive(t)
	pg := testpeer.StartPostgresT(t)
	db := pg.NewDatabaseT(t)
	flags := []string{"--storage", a3.url(), "--index", db}
	A := startPacsd(t, t.TempDir(), flags...)
	B := startPacsd(t, t.TempDir(), flags...)

	dir, files := writeSeries(t, 20)
	if out, err := A.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu to node A: %v\n%s", err, out)
	}

	t.Run("stored through A, found and served by B", func(t *testing.T) {
		study, series := files[0].StudyInstanceUID, files[0].SeriesInstanceUID
		matches := qido(t, B, "/studies?StudyInstanceUID="+study)
		if len(matches) != 1 || intValue(matches[0], "00201208") != len(files) {
			t.Fatalf("node B finds %v, want the study with %d instances", matches, len(files))
		}
		// Every instance through B is the object A stored.
		st := a3.store(t)
		for _, f := range files[:5] {
			url := "http://" + B.httpAddr + "/dicom-web/studies/" + study + "/series/" + series + "/instances/" + f.SOPInstanceUID
			got := wadoObject(t, url)
			var key string
			for info, err := range st.List(t.Context(), study+"/"+series+"/"+f.SOPInstanceUID+"_") {
				if err != nil {
					t.Fatal(err)
				}
				key = info.Key
			}
			obj, err := st.Open(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := io.ReadAll(obj)
			obj.Close()
			if !bytes.Equal(got, want) {
				t.Errorf("%s: node B serves %d bytes, the bucket holds %d", f.SOPInstanceUID, len(got), len(want))
			}
		}
	})

	t.Run("stored through B by STOW-RS, retrieved from A by C-GET", func(t *testing.T) {
		_, more := writeSeries(t, 1)
		data, err := os.ReadFile(more[0].Path)
		if err != nil {
			t.Fatal(err)
		}
		stowTo(t, B, data)
		out := t.TempDir()
		if o, err := A.dcmtk("getscu", "-S", "+B", "-od", out, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+more[0].StudyInstanceUID); err != nil {
			t.Fatalf("getscu from node A: %v\n%s", err, o)
		}
		got := dirFiles(t, out)
		path, ok := got[more[0].SOPInstanceUID]
		if !ok {
			t.Fatalf("node A sent %d files, not the instance stored through B", len(got))
		}
		_, want := part10(t, more[0].Path)
		if _, ds := part10(t, path); !bytes.Equal(ds, want) {
			t.Errorf("the data set from node A differs from the one stored through node B")
		}
	})

	t.Run("the same instance through both nodes at once is one instance", func(t *testing.T) {
		dir, same := writeSeries(t, 3)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			node := []*instance{A, B}[i%2]
			wg.Go(func() {
				if out, err := node.dcmtk("storescu", "+sd", dir); err != nil {
					errs <- fmt.Errorf("storescu: %v\n%s", err, out)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, node := range []*instance{A, B} {
			matches := qido(t, node, "/studies/"+same[0].StudyInstanceUID+"/instances")
			if len(matches) != len(same) {
				t.Errorf("node %s finds %d instances, want %d", node.httpAddr, len(matches), len(same))
			}
			studies := qido(t, node, "/studies?StudyInstanceUID="+same[0].StudyInstanceUID)
			if len(studies) != 1 || intValue(studies[0], "00201208") != len(same) {
				t.Errorf("node %s: study %v, want one with %d instances", node.httpAddr, studies, len(same))
			}
		}
		var keys []string
		for info, err := range a3.store(t).List(t.Context(), same[0].StudyInstanceUID+"/") {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, info.Key)
		}
		if len(keys) != len(same) {
			t.Errorf("the bucket holds %d objects of the study, want %d: %v", len(keys), len(same), keys)
		}
	})

	t.Run("each node's audit journal verifies against its own head in the index", func(t *testing.T) {
		A.stop()
		B.stop()
		for _, node := range []*instance{A, B} {
			out, err := pacsdAudit(t, "verify", "--data", node.data, "--index", db)
			if err != nil || !strings.Contains(out, "chain intact") {
				t.Errorf("pacsd audit verify of the node on %s: %v\n%s", node.data, err, out)
			}
		}
	})
}

// qido runs a QIDO-RS search on a node and returns the matches.
func qido(t *testing.T, p *instance, path string) []map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr + "/dicom-web" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	var out []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
	}
	return out
}

func intValue(m map[string]any, tag string) int {
	e, _ := m[tag].(map[string]any)
	v, _ := e["Value"].([]any)
	if len(v) == 0 {
		return -1
	}
	n, _ := v[0].(float64)
	return int(n)
}

// wadoObject retrieves one instance's object as stored.
func wadoObject(t *testing.T, url string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("WADO-RS %s: %d %v", url, resp.StatusCode, err)
	}
	part, err := multipart.NewReader(resp.Body, params["boundary"]).NextPart()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(part)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stowTo stores Part-10 files on a node with STOW-RS.
func stowTo(t *testing.T, p *instance, files ...[]byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range files {
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(f)
	}
	mw.Close()
	resp, err := http.Post("http://"+p.httpAddr+"/dicom-web/studies", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), &body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("STOW-RS: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
}
