/**
 * Persistent memory-mapped dirty bitmaps: the file format, lock-free marking, extent walks over a
 * summary level, merge, clear, count, SHA-256 and the trust rules applied on open.
 */
package dev.tidemark.bitmap;
