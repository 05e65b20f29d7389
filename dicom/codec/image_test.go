package codec

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

// TestEncodeJPEG checks that what EncodeJPEG writes decodes with
// image/jpeg to the image, within what quality 95 loses.
func TestEncodeJPEG(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 61, 33))
	rgba := image.NewRGBA(image.Rect(0, 0, 61, 33))
	for y := range 33 {
		for x := range 61 {
			gray.SetGray(x, y, color.Gray{Y: uint8(x*4 + y)})
			rgba.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 7), 128, 255})
		}
	}
	sub := gray.SubImage(image.Rect(3, 2, 40, 30))
	reg := New(Options{})
	for _, tt := range []struct {
		name string
		img  image.Image
	}{{"gray", gray}, {"rgba", rgba}, {"gray with a stride", sub}} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := reg.EncodeJPEG(nil, tt.img, 95)
			if err != nil {
				t.Fatal(err)
			}
			got, err := jpeg.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if got.Bounds().Size() != tt.img.Bounds().Size() {
				t.Fatalf("size %v, want %v", got.Bounds().Size(), tt.img.Bounds().Size())
			}
			worst := 0
			ob, gb := tt.img.Bounds(), got.Bounds()
			for y := range ob.Dy() {
				for x := range ob.Dx() {
					r1, g1, b1, _ := tt.img.At(ob.Min.X+x, ob.Min.Y+y).RGBA()
					r2, g2, b2, _ := got.At(gb.Min.X+x, gb.Min.Y+y).RGBA()
					for _, d := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
						worst = max(worst, d, -d)
					}
				}
			}
			if worst > 12 {
				t.Errorf("a sample differs by %d", worst)
			}
		})
	}
	if _, err := reg.EncodeJPEG(nil, gray, 0); err == nil {
		t.Error("quality 0 accepted")
	}
}
