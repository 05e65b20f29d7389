package metrics

import "github.com/prometheus/client_golang/prometheus"

// compressMetrics are those of archive compression (package recompress).
type compressMetrics struct {
	instances     *prometheus.CounterVec
	originalBytes prometheus.Counter
	storedBytes   prometheus.Counter
	saved         prometheus.Gauge
	compressed    prometheus.Gauge
}

func newCompressMetrics(reg prometheus.Registerer) *compressMetrics {
	m := &compressMetrics{
		instances: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pacsd_compress_instances_total",
			Help: "Instances archive compression handled on this node, by outcome (compressed, skipped: left uncompressed for good, failed: to try again)."},
			[]string{"outcome"}),
		originalBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "pacsd_compress_original_bytes_total",
			Help: "Bytes of the originals this node compressed."}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "pacsd_compress_stored_bytes_total",
			Help: "Bytes of the compressed objects this node wrote in their place."}),
		saved: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pacsd_compress_saved_bytes",
			Help: "Bytes archive compression saves across the archive, as last counted in the index."}),
		compressed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pacsd_compress_compressed_instances",
			Help: "Instances kept compressed by archive compression across the archive, as last counted in the index."}),
	}
	reg.MustRegister(m.instances, m.originalBytes, m.storedBytes, m.saved, m.compressed)
	return m
}

// ObserveCompression counts an instance archive compression handled:
// outcome is compressed, skipped or failed; the bytes are those of the
// original and of the object that replaced it, for a compressed one.
func (r *Registry) ObserveCompression(outcome string, originalBytes, storedBytes int64) {
	if r == nil {
		return
	}
	r.compress.instances.WithLabelValues(outcome).Inc()
	if outcome == "compressed" {
		r.compress.originalBytes.Add(float64(originalBytes))
		r.compress.storedBytes.Add(float64(storedBytes))
	}
}

// SetCompressionTotals records what archive compression saves across the
// archive, as counted in the index.
func (r *Registry) SetCompressionTotals(instances, savedBytes int64) {
	if r == nil {
		return
	}
	r.compress.compressed.Set(float64(instances))
	r.compress.saved.Set(float64(savedBytes))
}
