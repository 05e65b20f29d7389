// libjpeg-turbo, 8-bit samples.
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>
#define FN(name) name##8
#include "jpeg_shim.h"
