// Package codec decodes and encodes the pixel data of the compressed
// DICOM transfer syntaxes, one frame at a time, and converts whole data
// sets between transfer syntaxes (Transcoder).
//
// Each codec lives in a file of its own and is reached through a
// Registry keyed by transfer syntax UID:
//
//   - JPEG Baseline (Process 1) and JPEG Extended (Process 2 and 4): 8-bit
//     frames through libjpeg-turbo, 12-bit frames through the 12-bit build
//     of the IJG library that GDCM ships (libgdcmjpeg12): Debian builds
//     libjpeg-turbo 2.1 for 8 bits only.
//   - JPEG Lossless, Non-Hierarchical (Process 14), every predictor, SV1
//     included, 2 to 16 bits: written in Go. Debian's libjpeg-turbo 2.1
//     has no lossless mode, and the format is small: Huffman-coded
//     differences of a predictor.
//   - JPEG-LS lossless and near-lossless: CharLS.
//   - JPEG 2000 lossless and lossy: OpenJPEG.
//   - HTJ2K lossless, lossless RPCL and lossy: OpenJPH.
//   - RLE Lossless (PS3.5 Annex G): written in Go; it is PackBits.
//
// Deflated Explicit VR Little Endian compresses the whole data set rather
// than its pixels; dicom.Transcode handles it, and Transcoder calls it.
//
// Every decoder checks what a code stream declares (size, components,
// precision) against the data set's Image Pixel attributes before it
// allocates anything for the frame, so that a hostile or broken code
// stream costs at most one frame of the size the data set declares, and
// Limits bounds that size.
//
// The C libraries are built by Debian with their assertions on, and some
// of them (OpenJPH 0.9's packet header and code-block parsing, among
// others) assert on conditions a hostile code stream can bring about,
// which would abort the process. Two defences stand in the way. Before
// OpenJPH sees an HTJ2K code stream, checkOpenJPH checks its main and
// tile-part headers for everything OpenJPH's parser reads without
// checking (ojph_check.go). And while a decoder of OpenJPH, OpenJPEG or
// CharLS runs, a failed assertion on its thread returns to the caller
// as an error (assert_trap.c defines glibc's __assert_fail, which the
// libraries call through the dynamic linker; elsewhere it aborts as
// glibc's does), and what the library had allocated for the frame is
// freed with the object that owns it.
//
// Transcode reads a data set as it streams: frame after frame, several
// frames of a multi-frame image converted at once on as many CPUs, within
// a memory budget, and written in order. A compressed data set whose
// header is in implicit VR (which some writers produce) is read as such.
// TranscodeReader runs Transcode behind a reader, for senders (C-GET and
// C-MOVE sub-operations, forwarding) that read what they send: Close
// stops the conversion and waits for it.
package codec
