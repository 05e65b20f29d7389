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
	"time"

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
