package compress

import "errors"

// Sentinel errors returned (wrapped with context) by decoding functions.
// Test for them with errors.Is.
var (
	// ErrTooLarge reports that a frame would decode to more bytes than the
	// caller's limit. It is detected before the output is allocated.
	ErrTooLarge = errors.New("compress: decoded size exceeds limit")

	// ErrCorrupt reports a truncated, malformed or otherwise undecodable
	// frame or payload.
	ErrCorrupt = errors.New("compress: corrupt frame")

	// ErrUnknownCodec reports a frame whose header names a codec this
	// version of the package does not implement.
	ErrUnknownCodec = errors.New("compress: unknown codec")

	// ErrUnknownDictionary reports a frame that was encoded with a
	// dictionary whose ID is not loaded in the decoder's Registry.
	ErrUnknownDictionary = errors.New("compress: unknown dictionary")
)
