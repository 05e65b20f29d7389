package storage

import "fmt"

// MaxKeyLen is the longest key in bytes. It is S3's limit, so that any key
// one backend accepts every backend accepts.
const MaxKeyLen = 1024

// maxSegmentLen is the longest segment, the NAME_MAX of common
// filesystems, so that every segment can be a file or directory name.
const maxSegmentLen = 255

// ValidKey reports whether key may name an object, and if not returns an
// error wrapping ErrInvalidKey that says why.
//
// A key is a relative path of segments separated by single slashes, at
// most MaxKeyLen bytes long. Each segment is 1 to 255 bytes of
// [A-Za-z0-9._-] and is neither "." nor "..". These rules leave no way to
// name a parent directory, an absolute path, a Windows path or drive, or a
// control character, so a key cannot escape a backend's root whatever its
// source; they also keep keys identical as file names and as S3 object
// names. Keys are case-sensitive, so a filesystem store should not sit on
// a case-insensitive filesystem unless the key scheme avoids keys that
// differ only in case (DICOM UIDs contain no letters).
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	if key[0] == '/' {
		return fmt.Errorf("%w: %q is absolute", ErrInvalidKey, key)
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			if !keyByte(key[i]) {
				return fmt.Errorf("%w: %q contains %q", ErrInvalidKey, key, key[i])
			}
			continue
		}
		switch seg := key[start:i]; {
		case seg == "":
			return fmt.Errorf("%w: %q has an empty segment", ErrInvalidKey, key)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidKey, key, seg)
		case len(seg) > maxSegmentLen:
			return fmt.Errorf("%w: %q has a segment longer than %d bytes", ErrInvalidKey, key, maxSegmentLen)
		}
		start = i + 1
	}
	return nil
}

// ValidPrefix reports whether prefix may be passed to List, and if not
// returns an error wrapping ErrInvalidKey.
//
// A prefix is valid if it is empty or if some valid key begins with it:
// "a/", "a/b" and "a/." (a prefix of "a/.x") are valid, "a//", "/a" and
// "../" are not. Checking the prefix with one more key byte appended
// expresses exactly that, because the appended byte completes a trailing
// empty, "." or ".." segment into a valid one and changes nothing else; a
// prefix that is itself a valid key is checked as it is, since appending
// could push it over a length limit.
func ValidPrefix(prefix string) error {
	if prefix == "" || ValidKey(prefix) == nil {
		return nil
	}
	if err := ValidKey(prefix + "x"); err != nil {
		return fmt.Errorf("%w: prefix %q cannot begin any key", ErrInvalidKey, prefix)
	}
	return nil
}

// keyByte reports whether c may appear in a key segment.
func keyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '-':
		return true
	}
	return false
}
