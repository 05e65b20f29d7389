// The OpenJPH glue of the HTJ2K codec. OpenJPH reports errors by calling
// a message handler and throwing; the handler configured here only
// throws, with the message, so that nothing is printed and every error
// becomes a return code of these C functions.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <openjph/ojph_arch.h>
#include <openjph/ojph_codestream.h>
#include <openjph/ojph_file.h>
#include <openjph/ojph_mem.h>
#include <openjph/ojph_message.h>
#include <openjph/ojph_params.h>

extern "C" {
#include "assert_trap.h"
#include "j2k_shim.h"
}

namespace {

class thrower : public ojph::message_error {
public:
	void operator()(int code, const char *file, int line, const char *fmt, ...) override {
		(void)code;
		(void)file;
		(void)line;
		char buf[PACSD_MSG];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(buf, sizeof buf, fmt, ap);
		va_end(ap);
		throw std::runtime_error(buf);
	}
};

class silent : public ojph::message_warning {
public:
	void operator()(int, const char *, int, const char *, ...) override {}
};

class silent_info : public ojph::message_info {
public:
	void operator()(int, const char *, int, const char *, ...) override {}
};

// quiet installs the handlers once; OpenJPH keeps them process-wide.
void quiet() {
	static thrower t;
	static silent s;
	static silent_info i;
	static bool done = [] {
		ojph::configure_error(&t);
		ojph::configure_warning(&s);
		ojph::configure_info(&i);
		// Debian's build prints with its own handler all the same; its
		// streams go nowhere.
		if (FILE *null = fopen("/dev/null", "w")) {
			ojph::set_error_stream(null);
			ojph::set_warning_stream(null);
			ojph::set_info_stream(null);
		}
		return true;
	}();
	(void)done;
}

// decode decodes into dst with the codestream *csp, which it makes; the
// caller deletes it, whether decode returns or an assertion fails.
int decode(const unsigned char *src, size_t n, int want_w, int want_h, int want_c, int want_bits,
		unsigned char *dst, size_t dst_size, int bps, int *info, char *msg, ojph::codestream *volatile *csp) {
	try {
		ojph::mem_infile f;
		f.open(src, n);
		*csp = new ojph::codestream;
		ojph::codestream &cs = **csp;
		cs.read_headers(&f);
		ojph::param_siz siz = cs.access_siz();
		ojph::point ext = siz.get_image_extent(), off = siz.get_image_offset();
		info[0] = (int)(ext.x - off.x);
		info[1] = (int)(ext.y - off.y);
		info[2] = (int)siz.get_num_components();
		info[3] = info[2] > 0 ? (int)siz.get_bit_depth(0) : 0;
		if (info[0] != want_w || info[1] != want_h || info[2] != want_c) {
			cs.close();
			return -2;
		}
		for (int c = 0; c < want_c; c++) {
			ojph::point ds = siz.get_downsampling(c);
			int bits = (int)siz.get_bit_depth(c);
			if (ds.x != 1 || ds.y != 1 || bits < 1 || bits > want_bits) {
				info[3] = bits;
				cs.close();
				return -2;
			}
		}
		if ((size_t)want_w * want_h * want_c * bps > dst_size) {
			snprintf(msg, PACSD_MSG, "decoded frame does not fit its buffer");
			cs.close();
			return -1;
		}
		cs.set_planar(false);
		cs.create();
		for (int y = 0; y < want_h; y++) {
			for (int c = 0; c < want_c; c++) {
				ojph::ui32 comp;
				ojph::line_buf *line = cs.pull(comp);
				if (line == nullptr || (int)comp >= want_c) throw std::runtime_error("missing line");
				const ojph::si32 *p = line->i32;
				int bits = (int)siz.get_bit_depth(comp);
				bool sgnd = siz.is_signed(comp);
				ojph::si32 lo = sgnd ? -(1 << (bits - 1)) : 0;
				ojph::si32 hi = sgnd ? (1 << (bits - 1)) - 1 : (ojph::si32)((1u << bits) - 1);
				for (int x = 0; x < want_w; x++) {
					ojph::si32 v = p[x];
					v = v < lo ? lo : v > hi ? hi : v;
					size_t at = ((size_t)y * want_w + x) * want_c + comp;
					dst[at * bps] = v & 0xFF;
					if (bps == 2) dst[at * bps + 1] = (v >> 8) & 0xFF;
				}
			}
		}
		cs.close();
	} catch (const std::exception &e) {
		snprintf(msg, PACSD_MSG, "%s", e.what());
		return -1;
	}
	return 0;
}

} // namespace

// pacsd_ojph_decode decodes one HTJ2K frame. OpenJPH's own checks that
// fail (assertions) end the decoding with an error, through the trap of
// assert_trap.c; what OpenJPH allocated for the frame is freed with the
// codestream that owns it.
extern "C" int pacsd_ojph_decode(const unsigned char *src, size_t n, int want_w, int want_h, int want_c,
		int want_bits, unsigned char *dst, size_t dst_size, int bps, int *info, char *msg) {
	quiet();
	msg[0] = 0;
	ojph::codestream *volatile cs = nullptr;
	jmp_buf trap;
	if (setjmp(trap) != 0) {
		delete cs;
		snprintf(msg, PACSD_MSG, "%s", pacsd_trap_message());
		return -1;
	}
	pacsd_trap_set(&trap);
	int rc = decode(src, n, want_w, want_h, want_c, want_bits, dst, dst_size, bps, info, msg, &cs);
	pacsd_trap_set(nullptr);
	delete cs;
	return rc;
}

extern "C" int pacsd_ojph_encode(const unsigned char *src, int w, int h, int comps, int bits, int bps, int sgnd,
		int mct, int rpcl, double quant, unsigned char **out, size_t *out_len, char *msg) {
	quiet();
	msg[0] = 0;
	try {
		ojph::codestream cs;
		ojph::param_siz siz = cs.access_siz();
		siz.set_image_extent(ojph::point(w, h));
		siz.set_num_components(comps);
		for (int c = 0; c < comps; c++) siz.set_component(c, ojph::point(1, 1), bits, sgnd != 0);
		siz.set_image_offset(ojph::point(0, 0));
		siz.set_tile_size(ojph::size(w, h));
		siz.set_tile_offset(ojph::point(0, 0));
		ojph::param_cod cod = cs.access_cod();
		// OpenJPH 0.9 decodes a lossy subband of a single row wrongly, so
		// the lowest band keeps at least two.
		int side = w < h ? w : h, levels = 5;
		while (levels > 0 && (1 << levels) > side / 2) levels--;
		cod.set_num_decomposition(levels);
		cod.set_block_dims(64, 64);
		cod.set_progression_order(rpcl ? "RPCL" : "LRCP");
		cod.set_color_transform(mct != 0);
		cod.set_reversible(quant <= 0);
		if (quant > 0) cs.access_qcd().set_irrev_quant((float)quant);
		cs.set_planar(false);
		ojph::mem_outfile f;
		f.open((size_t)w * h * comps * bps / 2 + 4096);
		cs.write_headers(&f);
		ojph::ui32 next = 0;
		ojph::line_buf *line = cs.exchange(nullptr, next);
		unsigned mask = (1u << bits) - 1;
		for (int y = 0; y < h; y++) {
			for (int c = 0; c < comps; c++) {
				ojph::si32 *p = line->i32;
				for (int x = 0; x < w; x++) {
					size_t at = (((size_t)y * w + x) * comps + next) * bps;
					unsigned v = src[at];
					if (bps == 2) v |= (unsigned)src[at + 1] << 8;
					v &= mask;
					ojph::si32 s = (ojph::si32)v;
					if (sgnd && ((v >> (bits - 1)) & 1)) s -= (ojph::si32)(1u << bits);
					p[x] = s;
				}
				line = cs.exchange(line, next);
			}
		}
		cs.flush();
		size_t len = (size_t)f.tell();
		unsigned char *buf = (unsigned char *)malloc(len ? len : 1);
		if (buf == nullptr) throw std::runtime_error("out of memory");
		memcpy(buf, f.get_data(), len);
		cs.close();
		*out = buf;
		*out_len = len;
	} catch (const std::exception &e) {
		snprintf(msg, PACSD_MSG, "%s", e.what());
		return -1;
	}
	return 0;
}
