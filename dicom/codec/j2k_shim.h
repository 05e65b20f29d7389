#ifndef PACSD_J2K_SHIM_H
#define PACSD_J2K_SHIM_H
#include <stddef.h>
#define PACSD_MSG 256
int pacsd_j2k_decode(const unsigned char *src, size_t n, int want_w, int want_h, int want_c, int want_bits,
	unsigned char *dst, size_t dst_size, int bps, int *info, char *msg);
int pacsd_j2k_encode(const unsigned char *src, int w, int h, int comps, int bits, int bps, int sgnd,
	int mct, double ratio, unsigned char **out, size_t *out_len, char *msg);
int pacsd_ojph_decode(const unsigned char *src, size_t n, int want_w, int want_h, int want_c, int want_bits,
	unsigned char *dst, size_t dst_size, int bps, int *info, char *msg);
int pacsd_ojph_encode(const unsigned char *src, int w, int h, int comps, int bits, int bps, int sgnd,
	int mct, int rpcl, double quant, unsigned char **out, size_t *out_len, char *msg);
#endif
