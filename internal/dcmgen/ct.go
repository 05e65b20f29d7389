package dcmgen

import (
	"encoding/binary"
	"math"
)

// CTPixels returns one frame of rows × columns samples of 12 bits stored
// in 16, little endian: an ellipse of soft tissue with some texture and
// an organ in it, and four bits of noise everywhere. It compresses
// losslessly about as real CT does, where the default gradient of
// Instance compresses to almost nothing and flatters a decoder.
func CTPixels(rows, columns int) []byte {
	pix := make([]byte, 0, rows*columns*2)
	seed := uint32(1)
	cx, cy := float64(columns)/2, float64(rows)/2
	for y := range rows {
		for x := range columns {
			dx, dy := (float64(x)-cx)/(0.39*float64(columns)), (float64(y)-cy)/(0.31*float64(rows))
			v := 0.0
			if dx*dx+dy*dy < 1 {
				v = 0.45 + 0.05*math.Sin(float64(x)/17)*math.Cos(float64(y)/23)
				if ox, oy := (float64(x)-0.39*float64(columns))/50, (float64(y)-0.47*float64(rows))/40; ox*ox+oy*oy < 1 {
					v = 0.6
				}
			}
			seed = seed*1664525 + 1013904223
			v = v*4095 + float64(seed>>28) - 8
			pix = binary.LittleEndian.AppendUint16(pix, uint16(min(max(v, 0), 4095)))
		}
	}
	return pix
}
