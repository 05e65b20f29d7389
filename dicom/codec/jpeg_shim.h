/*
 * The libjpeg glue of the JPEG codec, written once for two builds of the
 * library: jpeg8.c includes it after libjpeg-turbo's 8-bit jpeglib.h,
 * jpeg12.c after the 12-bit IJG jpeglib.h that GDCM ships. FN(name)
 * gives each build's functions their own names. Every libjpeg error
 * longjmps back to the function that called the library, so no error
 * leaves C.
 */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

struct FN(err) {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
};

static void FN(error_exit)(j_common_ptr cinfo) {
	struct FN(err) *e = (struct FN(err) *)cinfo->err;
	(*cinfo->err->format_message)(cinfo, e->msg);
	longjmp(e->jump, 1);
}

static void FN(output_message)(j_common_ptr cinfo) { (void)cinfo; }

/* Source manager over memory: a fill past the end is a truncated frame. */
struct FN(src) {
	struct jpeg_source_mgr pub;
	int truncated;
};

static const JOCTET FN(eoi)[2] = {0xFF, JPEG_EOI};

static void FN(init_source)(j_decompress_ptr cinfo) { (void)cinfo; }
static boolean FN(fill_input_buffer)(j_decompress_ptr cinfo) {
	struct FN(src) *s = (struct FN(src) *)cinfo->src;
	s->truncated = 1;
	s->pub.next_input_byte = FN(eoi);
	s->pub.bytes_in_buffer = 2;
	return TRUE;
}
static void FN(skip_input_data)(j_decompress_ptr cinfo, long n) {
	struct jpeg_source_mgr *s = cinfo->src;
	if (n <= 0) return;
	if ((size_t)n > s->bytes_in_buffer) {
		FN(fill_input_buffer)(cinfo);
		return;
	}
	s->next_input_byte += n;
	s->bytes_in_buffer -= n;
}
static void FN(term_source)(j_decompress_ptr cinfo) { (void)cinfo; }

/* Destination manager into a growing malloc'd buffer. */
struct FN(dst) {
	struct jpeg_destination_mgr pub;
	JOCTET *buf;
	size_t cap;
};

static void FN(init_destination)(j_compress_ptr cinfo) {
	struct FN(dst) *d = (struct FN(dst) *)cinfo->dest;
	d->pub.next_output_byte = d->buf;
	d->pub.free_in_buffer = d->cap;
}
static boolean FN(empty_output_buffer)(j_compress_ptr cinfo) {
	struct FN(dst) *d = (struct FN(dst) *)cinfo->dest;
	size_t used = d->cap;
	JOCTET *b = realloc(d->buf, d->cap * 2);
	if (b == NULL) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 0);
	d->buf = b;
	d->cap *= 2;
	d->pub.next_output_byte = b + used;
	d->pub.free_in_buffer = d->cap - used;
	return TRUE;
}
static void FN(term_destination)(j_compress_ptr cinfo) { (void)cinfo; }

/*
 * decode decodes one frame into dst (samples of bytes_per_sample bytes,
 * little endian, colour-by-pixel). It checks the frame header against
 * want_w, want_h and want_c before anything is allocated for the image.
 * convert asks for YCbCr to be converted to RGB; otherwise components
 * are returned as coded. It returns 0, or -1 with err filled in; a frame
 * header at odds with what is wanted is -2, with info filled in.
 */
int FN(pacsd_jpeg_decode)(const unsigned char *src, size_t n, int want_w, int want_h, int want_c,
		int convert, unsigned char *dst, size_t dst_size, int *info, char *err, size_t errlen) {
	struct jpeg_decompress_struct cinfo;
	struct FN(err) jerr;
	struct FN(src) s;
	JSAMPARRAY row = NULL;
	memset(&cinfo, 0, sizeof cinfo);
	cinfo.err = jpeg_std_error(&jerr.pub);
	jerr.pub.error_exit = FN(error_exit);
	jerr.pub.output_message = FN(output_message);
	if (setjmp(jerr.jump)) {
		snprintf(err, errlen, "%s", jerr.msg);
		jpeg_destroy_decompress(&cinfo);
		return -1;
	}
	jpeg_create_decompress(&cinfo);
	memset(&s, 0, sizeof s);
	s.pub.init_source = FN(init_source);
	s.pub.fill_input_buffer = FN(fill_input_buffer);
	s.pub.skip_input_data = FN(skip_input_data);
	s.pub.resync_to_restart = jpeg_resync_to_restart;
	s.pub.term_source = FN(term_source);
	s.pub.next_input_byte = src;
	s.pub.bytes_in_buffer = n;
	cinfo.src = &s.pub;
	jpeg_read_header(&cinfo, TRUE);
	info[0] = cinfo.image_width;
	info[1] = cinfo.image_height;
	info[2] = cinfo.num_components;
	info[3] = cinfo.data_precision;
	if ((int)cinfo.image_width != want_w || (int)cinfo.image_height != want_h ||
			cinfo.num_components != want_c || cinfo.data_precision != BITS_IN_JSAMPLE) {
		jpeg_destroy_decompress(&cinfo);
		return -2;
	}
	if (want_c == 3) {
		if (convert) {
			cinfo.jpeg_color_space = JCS_YCbCr;
			cinfo.out_color_space = JCS_RGB;
		} else {
			cinfo.jpeg_color_space = JCS_UNKNOWN;
			cinfo.out_color_space = JCS_UNKNOWN;
		}
	} else if (want_c != 1) {
		jpeg_destroy_decompress(&cinfo);
		return -2;
	}
	cinfo.dct_method = JDCT_ISLOW;
	jpeg_start_decompress(&cinfo);
	size_t bps = BITS_IN_JSAMPLE > 8 ? 2 : 1;
	size_t stride = (size_t)want_w * want_c;
	if (stride * want_h * bps > dst_size || cinfo.output_components != want_c) {
		snprintf(err, errlen, "decoded frame does not fit its buffer");
		jpeg_destroy_decompress(&cinfo);
		return -1;
	}
	row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, stride, 1);
	while (cinfo.output_scanline < cinfo.output_height) {
		JDIMENSION y = cinfo.output_scanline;
		jpeg_read_scanlines(&cinfo, row, 1);
		unsigned char *out = dst + (size_t)y * stride * bps;
		for (size_t i = 0; i < stride; i++) {
#if BITS_IN_JSAMPLE > 8
			unsigned v = (unsigned)row[0][i];
			out[2 * i] = v & 0xFF;
			out[2 * i + 1] = (v >> 8) & 0xFF;
#else
			out[i] = row[0][i];
#endif
		}
	}
	jpeg_finish_decompress(&cinfo);
	jpeg_destroy_decompress(&cinfo);
	if (s.truncated) {
		snprintf(err, errlen, "JPEG frame ends before its last scan line");
		return -1;
	}
	return 0;
}

/*
 * encode encodes one colour-by-pixel frame of bytes_per_sample samples,
 * little endian. ybr says the components are YCbCr already; optimize
 * asks for Huffman tables made for the image (a second pass); colour frames
 * are written as YCbCr with 4:2:2 subsampling, as YBR_FULL_422 requires.
 * On success *out is a malloc'd buffer of *out_len bytes the caller frees.
 */
int FN(pacsd_jpeg_encode)(const unsigned char *src, int w, int h, int c, int ybr, int quality, int optimize,
		unsigned char **out, size_t *out_len, char *err, size_t errlen) {
	struct jpeg_compress_struct cinfo;
	struct FN(err) jerr;
	struct FN(dst) d;
	memset(&cinfo, 0, sizeof cinfo);
	memset(&d, 0, sizeof d);
	cinfo.err = jpeg_std_error(&jerr.pub);
	jerr.pub.error_exit = FN(error_exit);
	jerr.pub.output_message = FN(output_message);
	if (setjmp(jerr.jump)) {
		snprintf(err, errlen, "%s", jerr.msg);
		jpeg_destroy_compress(&cinfo);
		free(d.buf);
		return -1;
	}
	jpeg_create_compress(&cinfo);
	d.cap = (size_t)w * h / 4 + 4096;
	d.buf = malloc(d.cap);
	if (d.buf == NULL) {
		snprintf(err, errlen, "out of memory");
		jpeg_destroy_compress(&cinfo);
		return -1;
	}
	d.pub.init_destination = FN(init_destination);
	d.pub.empty_output_buffer = FN(empty_output_buffer);
	d.pub.term_destination = FN(term_destination);
	cinfo.dest = &d.pub;
	cinfo.image_width = w;
	cinfo.image_height = h;
	cinfo.input_components = c;
	cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : (ybr ? JCS_YCbCr : JCS_RGB);
	jpeg_set_defaults(&cinfo);
	if (c == 3) {
		jpeg_set_colorspace(&cinfo, JCS_YCbCr);
		cinfo.comp_info[0].h_samp_factor = 2;
		cinfo.comp_info[0].v_samp_factor = 1;
	}
	cinfo.write_JFIF_header = FALSE;
	cinfo.dct_method = JDCT_ISLOW;
	jpeg_set_quality(&cinfo, quality, TRUE);
	cinfo.optimize_coding = optimize ? TRUE : FALSE;
	jpeg_start_compress(&cinfo, TRUE);
	size_t stride = (size_t)w * c;
	size_t bps = BITS_IN_JSAMPLE > 8 ? 2 : 1;
#if BITS_IN_JSAMPLE > 8
	JSAMPARRAY row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, stride, 1);
	while (cinfo.next_scanline < cinfo.image_height) {
		const unsigned char *in = src + (size_t)cinfo.next_scanline * stride * bps;
		for (size_t i = 0; i < stride; i++) {
			row[0][i] = (JSAMPLE)((in[2 * i] | (in[2 * i + 1] << 8)) & 0x0FFF);
		}
		jpeg_write_scanlines(&cinfo, row, 1);
	}
#else
	(void)bps;
	/* 8-bit samples are JSAMPLEs already: the rows are read in place. */
	JSAMPROW rows[16];
	while (cinfo.next_scanline < cinfo.image_height) {
		JDIMENSION n = 0;
		for (; n < 16 && cinfo.next_scanline + n < cinfo.image_height; n++) {
			rows[n] = (JSAMPROW)(src + (size_t)(cinfo.next_scanline + n) * stride);
		}
		jpeg_write_scanlines(&cinfo, rows, n);
	}
#endif
	jpeg_finish_compress(&cinfo);
	*out = d.buf;
	*out_len = d.cap - d.pub.free_in_buffer;
	jpeg_destroy_compress(&cinfo);
	return 0;
}
