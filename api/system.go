package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"
)

// System is what GET /api/system answers, and `pacsd status` prints: the
// server's identity and the state of what it runs on. Locations never
// carry credentials.
type System struct {
	Version       string `json:"version"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	AETitle       string `json:"ae_title"`
	DIMSEAddr     string `json:"dimse_addr"`
	HTTPAddr      string `json:"http_addr"`

	Associations Associations `json:"associations"`
	Storage      StorageState `json:"storage"`
	Index        IndexState   `json:"index"`
	// Spool is nil without one.
	Spool *SpoolState `json:"spool"`
	// Compression is nil when archive compression is off.
	Compression *CompressionState `json:"compression,omitempty"`
}

// CompressionState is what archive compression (--compress-after) saves:
// the instances kept compressed, the bytes of their originals and of
// their compressed objects, and the instances left uncompressed.
type CompressionState struct {
	Syntax        string `json:"syntax"`
	AfterSeconds  int64  `json:"after_seconds"`
	Instances     int64  `json:"instances"`
	OriginalBytes int64  `json:"original_bytes"`
	StoredBytes   int64  `json:"stored_bytes"`
	SavedBytes    int64  `json:"saved_bytes"`
	Skipped       int64  `json:"skipped"`
}

// Associations counts the DIMSE associations open now, and the most
// accepted at once (0: no limit).
type Associations struct {
	Active int `json:"active"`
	Max    int `json:"max"`
}

// StorageState is the object storage in use.
type StorageState struct {
	// Kind is "file" or "s3".
	Kind     string `json:"kind"`
	Location string `json:"location"`
	// UsedBytes and FreeBytes are nil where they cannot be known
	// cheaply (the bytes of a bucket; the free space of a bucket).
	UsedBytes *int64 `json:"used_bytes"`
	FreeBytes *int64 `json:"free_bytes"`
}

// IndexState is the index in use.
type IndexState struct {
	// Kind is "sqlite" or "postgres".
	Kind     string      `json:"kind"`
	Location string      `json:"location"`
	Counts   IndexCounts `json:"counts"`
}

// IndexCounts are the records of the index at each level.
type IndexCounts struct {
	Patients  int `json:"patients"`
	Studies   int `json:"studies"`
	Series    int `json:"series"`
	Instances int `json:"instances"`
}

// SpoolState is what the local spool holds that S3 does not have yet.
type SpoolState struct {
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

func (s *Server) getSystem(c echo.Context) error {
	sys, err := s.System(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sys)
}

// SystemFunc reports the state of the system; see Server.System.
type SystemFunc func(ctx context.Context) (*System, error)
