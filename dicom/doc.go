// Package dicom reads what the archive needs from a DICOM data set as it
// streams past: the identifying UIDs first, then the whole header, with
// every bulk value (Pixel Data and any other large binary value) located by
// its offset instead of held in memory. The bytes themselves are never
// changed; the caller keeps them verbatim.
//
// The pieces, in the order a data set meets them:
//
//   - A Scanner reads a data set once, for two readers: the caller, who
//     keeps every byte, and the header decoder. Limits bound what it holds
//     in memory, whatever the sender claims.
//   - One element reader serves the Scanner and Transcode: a data set means
//     the same to both. It reports a data set that ends inside an element,
//     or whose sequence or item of undefined length is never closed, as
//     ErrTruncated (and ErrMalformed); other damage is ErrMalformed alone.
//   - Elements sent as UN whose tag the data dictionary knows are read
//     with the dictionary's VR (PS3.5 §6.2.2); the bytes stay as sent.
//   - Every offset of a deflated data set counts bytes of the inflated data
//     set; InflatedObject reads a stored deflated object by those offsets.
//   - SwapUnit is the one rule of byte order: every conversion between
//     little and big endian (Transcode, Encode, frames through
//     NewSwapReader) follows it.
//   - Transcode converts between the uncompressed transfer syntaxes in one
//     fixed buffer; Encode writes the small data sets of queries and their
//     responses, in their character set; AppendJSON and ParseJSON are
//     DICOM JSON (PS3.18 Annex F).
//   - Amend, and an Amendment encoded once for many data sets, write a
//     corrected header over a stored data set on its way out, converting
//     its text to UTF-8 when a corrected value needs it; Amendment.Head
//     leaves the rest, pixel data mostly, to be read from the source as
//     it is.
//
// Attribute values are read by github.com/suyashkumar/dicom, from a
// normalized copy of the header that the walker makes, and their text
// decoded from its character set here; the library's types stay inside this
// package so that it can be replaced. The walker, the transcoder and the
// text decoder are written here because no library streams a data set
// without holding its values, locates bulk data by offset, or survives a
// hostile sender's lengths.
package dicom
