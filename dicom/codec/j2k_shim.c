// The OpenJPEG glue of the JPEG 2000 codec: code streams in memory, errors
// as messages rather than prints.
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <openjpeg.h>
#include "assert_trap.h"
#include "j2k_shim.h"

struct membuf {
	unsigned char *data;
	size_t len, pos, cap;
	int growable;
};

static OPJ_SIZE_T mem_read(void *buf, OPJ_SIZE_T n, void *user) {
	struct membuf *m = user;
	if (m->pos >= m->len) return (OPJ_SIZE_T)-1;
	if (n > m->len - m->pos) n = m->len - m->pos;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return n;
}

static OPJ_SIZE_T mem_write(void *buf, OPJ_SIZE_T n, void *user) {
	struct membuf *m = user;
	if (m->pos + n > m->cap) {
		size_t cap = m->cap * 2;
		if (cap < m->pos + n) cap = m->pos + n;
		unsigned char *d = realloc(m->data, cap);
		if (d == NULL) return (OPJ_SIZE_T)-1;
		m->data = d;
		m->cap = cap;
	}
	memcpy(m->data + m->pos, buf, n);
	m->pos += n;
	if (m->pos > m->len) m->len = m->pos;
	return n;
}

static OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *user) {
	struct membuf *m = user;
	if (n < 0 && (size_t)(-n) > m->pos) return -1;
	if (!m->growable && n > 0 && (size_t)n > m->len - m->pos) n = m->len - m->pos;
	m->pos += n;
	return n;
}

static OPJ_BOOL mem_seek(OPJ_OFF_T n, void *user) {
	struct membuf *m = user;
	if (n < 0 || (!m->growable && (size_t)n > m->len)) return OPJ_FALSE;
	m->pos = n;
	return OPJ_TRUE;
}

static void on_error(const char *msg, void *user) {
	char *out = user;
	if (out[0] == 0) snprintf(out, PACSD_MSG, "%s", msg);
	size_t n = strlen(out);
	if (n > 0 && out[n - 1] == '\n') out[n - 1] = 0;
}

static void quiet(const char *msg, void *user) { (void)msg; (void)user; }

static opj_stream_t *mem_stream(struct membuf *m, int input) {
	opj_stream_t *s = opj_stream_create(1 << 16, input ? OPJ_TRUE : OPJ_FALSE);
	if (s == NULL) return NULL;
	opj_stream_set_user_data(s, m, NULL);
	if (input) {
		opj_stream_set_user_data_length(s, m->len);
		opj_stream_set_read_function(s, mem_read);
	} else {
		opj_stream_set_write_function(s, mem_write);
	}
	opj_stream_set_skip_function(s, mem_skip);
	opj_stream_set_seek_function(s, mem_seek);
	return s;
}

// j2k_decoding is what decoding allocates, freed whether it ends or an
// assertion fails.
struct j2k_decoding {
	opj_codec_t *c;
	opj_stream_t *s;
	opj_image_t *img;
};

static void j2k_free(volatile struct j2k_decoding *d) {
	if (d->img) opj_image_destroy(d->img);
	if (d->s) opj_stream_destroy(d->s);
	if (d->c) opj_destroy_codec(d->c);
}

static int j2k_decode(volatile struct j2k_decoding *d, struct membuf *m, int want_w, int want_h, int want_c, int want_bits,
		unsigned char *dst, size_t dst_size, int bps, int *info, char *msg) {
	int jp2 = m->len >= 12 && memcmp(m->data + 4, "jP  ", 4) == 0;
	opj_codec_t *c = d->c = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
	opj_stream_t *s = d->s = mem_stream(m, 1);
	opj_image_t *img = NULL;
	opj_dparameters_t p;
	int rc = -1;
	if (c == NULL || s == NULL) {
		snprintf(msg, PACSD_MSG, "out of memory");
		goto done;
	}
	opj_set_error_handler(c, on_error, msg);
	opj_set_warning_handler(c, quiet, NULL);
	opj_set_info_handler(c, quiet, NULL);
	opj_set_default_decoder_parameters(&p);
	if (!opj_setup_decoder(c, &p)) goto done;
	int ok = opj_read_header(s, c, &img);
	d->img = img;
	if (!ok) goto done;
	info[0] = img->x1 - img->x0;
	info[1] = img->y1 - img->y0;
	info[2] = img->numcomps;
	info[3] = img->numcomps > 0 ? img->comps[0].prec : 0;
	if (info[0] != want_w || info[1] != want_h || info[2] != want_c) {
		rc = -2;
		goto done;
	}
	for (int i = 0; i < want_c; i++) {
		opj_image_comp_t *k = &img->comps[i];
		if (k->dx != 1 || k->dy != 1 || k->prec < 1 || (int)k->prec > want_bits) {
			info[3] = k->prec;
			rc = -2;
			goto done;
		}
	}
	if (!opj_decode(c, s, img) || !opj_end_decompress(c, s)) goto done;
	size_t pixels = (size_t)want_w * want_h;
	if (pixels * want_c * bps > dst_size) {
		snprintf(msg, PACSD_MSG, "decoded frame does not fit its buffer");
		goto done;
	}
	for (int i = 0; i < want_c; i++) {
		opj_image_comp_t *k = &img->comps[i];
		if (k->data == NULL || k->w != (OPJ_UINT32)want_w || k->h != (OPJ_UINT32)want_h) {
			snprintf(msg, PACSD_MSG, "component %d was not decoded whole", i);
			goto done;
		}
		const OPJ_INT32 *d = k->data;
		OPJ_INT32 lo = k->sgnd ? -(1 << (k->prec - 1)) : 0;
		OPJ_INT32 hi = k->sgnd ? (1 << (k->prec - 1)) - 1 : (OPJ_INT32)((1u << k->prec) - 1);
		for (size_t j = 0; j < pixels; j++) {
			OPJ_INT32 v = d[j];
			v = v < lo ? lo : v > hi ? hi : v;
			size_t at = (j * want_c + i) * bps;
			dst[at] = v & 0xFF;
			if (bps == 2) dst[at + 1] = (v >> 8) & 0xFF;
		}
	}
	rc = 0;
done:
	if (rc == -1 && msg[0] == 0) snprintf(msg, PACSD_MSG, "the code stream does not decode");
	return rc;
}

// pacsd_j2k_decode decodes one JPEG 2000 frame; an assertion of OpenJPEG
// that fails ends it with an error (assert_trap.c).
int pacsd_j2k_decode(const unsigned char *src, size_t n, int want_w, int want_h, int want_c, int want_bits,
		unsigned char *dst, size_t dst_size, int bps, int *info, char *msg) {
	struct membuf m = {(unsigned char *)src, n, 0, n, 0};
	volatile struct j2k_decoding d = {NULL, NULL, NULL};
	jmp_buf trap;
	msg[0] = 0;
	if (setjmp(trap) != 0) {
		j2k_free(&d);
		snprintf(msg, PACSD_MSG, "%s", pacsd_trap_message());
		return -1;
	}
	pacsd_trap_set(&trap);
	int rc = j2k_decode(&d, &m, want_w, want_h, want_c, want_bits, dst, dst_size, bps, info, msg);
	pacsd_trap_set(NULL);
	j2k_free(&d);
	return rc;
}

int pacsd_j2k_encode(const unsigned char *src, int w, int h, int comps, int bits, int bps, int sgnd,
		int mct, double ratio, unsigned char **out, size_t *out_len, char *msg) {
	opj_cparameters_t p;
	opj_image_cmptparm_t cp[3];
	struct membuf m = {NULL, 0, 0, 0, 1};
	opj_codec_t *c = NULL;
	opj_stream_t *s = NULL;
	opj_image_t *img = NULL;
	int rc = -1;
	msg[0] = 0;
	opj_set_default_encoder_parameters(&p);
	p.tcp_numlayers = 1;
	p.cp_disto_alloc = 1;
	p.tcp_rates[0] = ratio > 1 ? (float)ratio : 0;
	p.irreversible = ratio > 1;
	p.tcp_mct = mct;
	int side = w < h ? w : h;
	while (p.numresolution > 1 && (1 << (p.numresolution - 1)) > side) p.numresolution--;
	memset(cp, 0, sizeof cp);
	for (int i = 0; i < comps; i++) {
		cp[i].dx = cp[i].dy = 1;
		cp[i].w = w;
		cp[i].h = h;
		cp[i].prec = bits;
		cp[i].sgnd = sgnd;
	}
	img = opj_image_create(comps, cp, comps == 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
	if (img == NULL) {
		snprintf(msg, PACSD_MSG, "out of memory");
		goto done;
	}
	img->x0 = img->y0 = 0;
	img->x1 = w;
	img->y1 = h;
	size_t pixels = (size_t)w * h;
	unsigned mask = bits >= 32 ? 0xFFFFFFFFu : ((1u << bits) - 1);
	for (int i = 0; i < comps; i++) {
		OPJ_INT32 *d = img->comps[i].data;
		for (size_t j = 0; j < pixels; j++) {
			size_t at = (j * comps + i) * bps;
			unsigned v = src[at];
			if (bps == 2) v |= (unsigned)src[at + 1] << 8;
			v &= mask;
			OPJ_INT32 x = (OPJ_INT32)v;
			if (sgnd && (v >> (bits - 1)) & 1) x -= (OPJ_INT32)(1u << bits);
			d[j] = x;
		}
	}
	m.cap = pixels * comps * bps / 2 + 4096;
	m.data = malloc(m.cap);
	c = opj_create_compress(OPJ_CODEC_J2K);
	s = mem_stream(&m, 0);
	if (m.data == NULL || c == NULL || s == NULL) {
		snprintf(msg, PACSD_MSG, "out of memory");
		goto done;
	}
	opj_set_error_handler(c, on_error, msg);
	opj_set_warning_handler(c, quiet, NULL);
	opj_set_info_handler(c, quiet, NULL);
	if (!opj_setup_encoder(c, &p, img) || !opj_start_compress(c, img, s) || !opj_encode(c, s) ||
			!opj_end_compress(c, s))
		goto done;
	rc = 0;
done:
	if (rc == 0 && msg[0] == 0) {
		*out = m.data;
		*out_len = m.len;
		m.data = NULL;
	} else {
		rc = -1;
		if (msg[0] == 0) snprintf(msg, PACSD_MSG, "encoding failed");
	}
	free(m.data);
	if (img) opj_image_destroy(img);
	if (s) opj_stream_destroy(s);
	if (c) opj_destroy_codec(c);
	return rc;
}
