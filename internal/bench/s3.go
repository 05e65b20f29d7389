package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// s3Peers are pacsd storing into a bucket of srv, a MinIO server started
// once for the run, in both acknowledgement modes: ack=direct answers
// after S3 confirms each object, ack=spool after the object is fsynced
// into a local spool that uploads in the background. A spooled run counts
// only when the spool has drained, and the time it took after storescu
// ended is recorded in drains.
//
// endpoint is where pacsd reaches the server: srv itself, or a proxy in
// front of it that adds latency, as an S3 service across a network has.
func s3Peers(bin string, srv *testpeer.S3Server, endpoint string, latency time.Duration, drains map[string][]time.Duration) []peer {
	mk := func(ack, acks string) peer {
		name := "pacsd-s3-" + ack
		return peer{
			name: name,
			acks: acks,
			start: func(ctx context.Context, dir string, dests ...testpeer.Modality) (*server, error) {
				var b [6]byte
				rand.Read(b[:])
				url := fmt.Sprintf("s3://bench-%s?endpoint=%s&secure=false&region=%s&ack=%s",
					hex.EncodeToString(b[:]), endpoint, srv.Region, ack)
				s, err := startPacsdWith(ctx, bin, dir, dests, []string{"--storage", url},
					[]string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey})
				if err != nil {
					return nil, err
				}
				data := filepath.Join(dir, "data")
				s.objects = ""
				s.stored = func(ctx context.Context) (int, error) {
					if ack == "spool" {
						start := time.Now()
						if err := waitEmpty(ctx, filepath.Join(data, "spool")); err != nil {
							return 0, err
						}
						drains[name] = append(drains[name], time.Since(start))
					}
					return indexedInstances(ctx, filepath.Join(data, "index.db"))
				}
				return s, nil
			},
		}
	}
	where := fmt.Sprintf("MinIO on this machine behind a proxy adding %v to every request", latency)
	if latency == 0 {
		where = "MinIO on this machine, over loopback"
	}
	return []peer{
		mk("direct", "after "+where+" confirmed the object, and the commit of its index row"),
		mk("spool", "after fsync of the object into the local spool and the commit of its index row; uploaded to "+where+" in the background"),
	}
}

// putObjectName is the name of the yardstick of the S3 peers.
const putObjectName = "s3-putobject"

// putObjectPeer is the yardstick of the S3 peers, with no DICOM in it: a
// plain minio-go PutObject of each file of the series, one after the
// other as storescu sends them, into a fresh bucket of the same server
// through the same endpoint. What pacsd with ack=direct reaches is set
// against it.
func putObjectPeer(srv *testpeer.S3Server, endpoint string) peer {
	return peer{
		name: putObjectName,
		acks: "not a DICOM peer: a loop of minio-go PutObject calls, one file of the series at a time, each returning once S3 confirmed the object " +
			"(its storescu CPU column is the loop's own CPU)",
		run: func(ctx context.Context, corpus string) (sendResult, error) {
			return putObjects(ctx, srv, endpoint, corpus)
		},
	}
}

// putObjects puts every file of the directory corpus into a fresh bucket
// and checks that the bucket then holds them all.
func putObjects(ctx context.Context, srv *testpeer.S3Server, endpoint, corpus string) (sendResult, error) {
	var res sendResult
	client, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Region: srv.Region,
	})
	if err != nil {
		return res, err
	}
	var b [6]byte
	rand.Read(b[:])
	bucket := "bench-put-" + hex.EncodeToString(b[:])
	if err := client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: srv.Region}); err != nil {
		return res, err
	}
	entries, err := os.ReadDir(corpus)
	if err != nil {
		return res, err
	}
	put := func(name string) error {
		f, err := os.Open(filepath.Join(corpus, name))
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		_, err = client.PutObject(ctx, bucket, name, f, fi.Size(), minio.PutObjectOptions{ContentType: "application/dicom"})
		return err
	}
	cpu0 := selfCPU()
	start := time.Now()
	for _, e := range entries {
		if err := put(e.Name()); err != nil {
			return res, fmt.Errorf("PutObject %s: %w", e.Name(), err)
		}
	}
	res.wall = time.Since(start)
	res.cpu = selfCPU() - cpu0
	n := 0
	for obj := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{}) {
		if obj.Err != nil {
			return res, obj.Err
		}
		n++
	}
	if n != len(entries) {
		return res, fmt.Errorf("bucket %s holds %d of %d objects", bucket, n, len(entries))
	}
	return res, nil
}

// selfCPU returns the user and system time of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// indexedInstances counts the instances in the SQLite index at path,
// which pacsd may still have open.
func indexedInstances(ctx context.Context, path string) (int, error) {
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	c, err := db.Counts(ctx)
	return c.Instances, err
}

// waitEmpty waits until the directory tree at dir holds no regular file
// (a drained spool), for at most five minutes.
func waitEmpty(ctx context.Context, dir string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n := 0
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the spool %s still holds %d files after five minutes", dir, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// latencyProxy serves HTTP on 127.0.0.1, passing every request to target
// after waiting latency: an S3 service across a network rather than on
// the same machine. It keeps the Host header, which S3 signatures cover.
func latencyProxy(target string, latency time.Duration) (endpoint string, stop func(), err error) {
	u, err := neturl.Parse(target)
	if err != nil {
		return "", nil, err
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(latency)
		proxy.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	return l.Addr().String(), func() { srv.Close() }, nil
}
