package s3

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the endpoint of a URL that names none: Amazon S3,
// which minio-go directs to the bucket's region.
const DefaultEndpoint = "s3.amazonaws.com"

// ParseURL parses the URL by which pacsd's --storage flag names an S3
// bucket, and returns the Config for New:
//
//	s3://BUCKET[/PREFIX][?endpoint=HOST[:PORT]][&secure=BOOL][&region=REGION][&prefix=PREFIX][&part_size=SIZE][&max_retries=N][&stall_timeout=DURATION]
//
// endpoint defaults to DefaultEndpoint and secure to true. The prefix may
// be given as the URL's path or as a parameter, not both. part_size is a
// number of bytes, optionally followed by KiB, MiB or GiB. max_retries is
// Config.MaxRetries, at least 1. stall_timeout is Config.StallTimeout, a
// Go duration such as 30s. Any other parameter is an error, so that
// a misspelt one is not silently ignored.
//
// The credentials are read with getenv (os.Getenv in production) from
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN for
// temporary credentials, as AWS's own tools read them. A URL carrying
// credentials is refused: URLs end up in configuration files, process
// listings and logs.
func ParseURL(rawURL string, getenv func(string) string) (Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the whole URL, secrets and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Config{}, fmt.Errorf("s3: storage URL does not parse: %w", err)
	}
	if u.User != nil {
		return Config{}, errors.New("s3: credentials in the storage URL are not allowed; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
	}
	// Errors quote the URL without its query, so that whatever was
	// put there by mistake does not end up in logs.
	where := "s3://" + u.Host + u.Path
	switch {
	case u.Scheme != "s3":
		return Config{}, fmt.Errorf("s3: URL %q: scheme must be s3", u.Scheme+"://"+u.Host+u.Path)
	case u.Opaque != "" || u.Host == "":
		return Config{}, errors.New("s3: storage URL: want s3://BUCKET")
	case u.Fragment != "":
		return Config{}, fmt.Errorf("s3: URL %q: unexpected fragment", where)
	}
	cfg := Config{
		Endpoint: DefaultEndpoint,
		Secure:   true,
		Bucket:   u.Host,
		Prefix:   strings.Trim(u.Path, "/"),
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("s3: URL %q: query: %w", where, err)
	}
	for name, values := range q {
		if len(values) != 1 {
			return Config{}, fmt.Errorf("s3: URL %q: parameter %s given %d times", where, name, len(values))
		}
		v := values[0]
		switch name {
		case "endpoint":
			if v == "" || strings.Contains(v, "/") {
				return Config{}, fmt.Errorf("s3: URL %q: endpoint must be HOST or HOST:PORT, without scheme", where)
			}
			cfg.Endpoint = v
		case "secure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("s3: URL %q: secure=%q is not true or false", where, v)
			}
			cfg.Secure = b
		case "region":
			cfg.Region = v
		case "prefix":
			if cfg.Prefix != "" {
				return Config{}, fmt.Errorf("s3: URL %q: prefix given both as path and as parameter", where)
			}
			cfg.Prefix = strings.Trim(v, "/")
		case "part_size":
			n, err := parseSize(v)
			if err != nil {
				return Config{}, fmt.Errorf("s3: URL %q: part_size: %w", where, err)
			}
			cfg.PartSize = n
		case "max_retries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				return Config{}, fmt.Errorf("s3: URL %q: max_retries=%q is not a number from 1 to 100", where, v)
			}
			cfg.MaxRetries = n
		case "stall_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Config{}, fmt.Errorf("s3: URL %q: stall_timeout=%q is not a positive duration such as 30s", where, v)
			}
			cfg.StallTimeout = d
		default:
			return Config{}, fmt.Errorf("s3: URL %q: unknown parameter %q", where, name)
		}
	}
	cfg.AccessKey = getenv("AWS_ACCESS_KEY_ID")
	cfg.SecretKey = getenv("AWS_SECRET_ACCESS_KEY")
	cfg.SessionToken = getenv("AWS_SESSION_TOKEN")
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return Config{}, errors.New("s3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the credentials for the bucket")
	}
	return cfg, nil
}

// parseSize parses a number of bytes with an optional binary unit.
func parseSize(s string) (int64, error) {
	orig, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a positive number of bytes, KiB, MiB or GiB", orig)
	}
	return n * mult, nil
}
