// The 12-bit build of the IJG library that GDCM ships; its header renames
// every libjpeg function, so it links beside libjpeg-turbo.
#include <stddef.h>
#include <stdio.h>
#include <gdcmjpeg/12/jpeglib.h>
#include <gdcmjpeg/12/jerror.h>
#define FN(name) name##12
#include "jpeg_shim.h"
