package nhs

import (
	"errors"
	"fmt"
	"strings"
)

// OID is the NHS number's issuer as an ISO object identifier, as
// Universal Entity ID (0040,0032) and Issuer of Patient ID carry it.
const OID = "2.16.840.1.113883.2.1.4.1"

// DefaultIssuers are the Issuer of Patient ID values that name the NHS
// when nothing else is configured.
var DefaultIssuers = []string{"NHS", OID}

// ErrInvalid reports a value that is not an NHS number.
var ErrInvalid = errors.New("nhs: not a valid NHS number")

// Normalize returns the NHS number s holds, its ten digits without the
// spaces or dashes people write between them ("943 476 5919"), or an
// error wrapping ErrInvalid that says what is wrong with it: not ten
// digits, or a check digit that does not match the first nine.
func Normalize(s string) (string, error) {
	s = strings.TrimSpace(s)
	var d [10]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n == len(d) {
				return "", fmt.Errorf("%w: %q has more than ten digits", ErrInvalid, s)
			}
			d[n] = c
			n++
		case c == ' ' || c == '-':
		default:
			return "", fmt.Errorf("%w: %q holds %q", ErrInvalid, s, c)
		}
	}
	if n != len(d) {
		return "", fmt.Errorf("%w: %q has %d digits, not ten", ErrInvalid, s, n)
	}
	// The weights run from 10 down to 2 over the first nine digits; the
	// check digit is 11 less the sum's remainder, 11 standing for 0 and
	// 10 for no valid number at all.
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(d[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 || check != int(d[9]-'0') {
		return "", fmt.Errorf("%w: %q fails its check digit", ErrInvalid, s)
	}
	return string(d[:]), nil
}

// Issuers is the set of Issuer of Patient ID values that name the NHS.
// The zero value names none.
type Issuers []string

// Has reports whether issuer names the NHS; the comparison ignores case
// and surrounding spaces.
func (is Issuers) Has(issuer string) bool {
	issuer = strings.TrimSpace(issuer)
	if issuer == "" {
		return false
	}
	for _, v := range is {
		if strings.EqualFold(strings.TrimSpace(v), issuer) {
			return true
		}
	}
	return false
}
